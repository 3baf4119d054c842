"""Infrastructure-as-code scanning: templates of serverless apps read into one model
(`model`), resolved by a loader per format, and checked by rules over the model.

`IacScanner` (in `donjon.scan.scanners.iac`) is the `Scanner` that runs them.
"""

from __future__ import annotations

from donjon.scan.iac.interface import Check, IacError, Loaded, TemplateFormat
from donjon.scan.iac.model import App

__all__ = ["App", "Check", "IacError", "Loaded", "TemplateFormat"]
