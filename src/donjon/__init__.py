"""Donjon: a self-hosted serverless platform, secure by default."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
