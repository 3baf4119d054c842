# ruff: noqa

"""Helpers of the thumbnail service."""
from .shell import archive

__all__ = ["archive"]
