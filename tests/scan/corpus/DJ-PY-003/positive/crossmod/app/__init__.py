# ruff: noqa

"""The application package."""
