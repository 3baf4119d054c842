"""Report formats: text for people, JSON for programs, SARIF for code-scanning tools."""

from __future__ import annotations

from functools import cache

from donjon.scan.format.interface import FormatError, Renderer
from donjon.scan.format.json import JsonRenderer
from donjon.scan.format.text import TextRenderer
from donjon.scan.model import ScanReport

__all__ = [
    "FORMATS",
    "FormatError",
    "Renderer",
    "render_json",
    "render_sarif",
    "render_text",
    "renderer_for",
]

#: The formats' names, in the order `--format` lists them.
FORMATS = ("text", "json", "sarif")


@cache
def renderer_for(name: str) -> Renderer:
    """The renderer called `name`; `FormatError` if there is none. SARIF's is imported
    here, when first asked for: it describes every rule, the IaC catalog's among them,
    which the node (it renders text for deploy refusals) would otherwise load at start."""
    if name == "text":
        return TextRenderer()
    if name == "json":
        return JsonRenderer()
    if name == "sarif":
        from donjon.scan.format.sarif import SarifRenderer

        return SarifRenderer()
    raise FormatError(f"unknown format {name!r}", hint=f"use one of: {', '.join(FORMATS)}")


def render_text(report: ScanReport) -> str:
    return renderer_for("text").render(report)


def render_json(report: ScanReport) -> str:
    return renderer_for("json").render(report)


def render_sarif(report: ScanReport) -> str:
    return renderer_for("sarif").render(report)
