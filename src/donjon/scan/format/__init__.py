"""Report formats: text for people, JSON for programs, SARIF for code-scanning tools."""

from __future__ import annotations

from donjon.scan.format.interface import FormatError, Renderer
from donjon.scan.format.json import JsonRenderer
from donjon.scan.format.sarif import SarifRenderer
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

FORMATS: dict[str, Renderer] = {
    r.name: r for r in (TextRenderer(), JsonRenderer(), SarifRenderer())
}


def renderer_for(name: str) -> Renderer:
    """The renderer called `name`; `FormatError` if there is none."""
    try:
        return FORMATS[name]
    except KeyError:
        raise FormatError(
            f"unknown format {name!r}", hint=f"use one of: {', '.join(FORMATS)}"
        ) from None


def render_text(report: ScanReport) -> str:
    return FORMATS["text"].render(report)


def render_json(report: ScanReport) -> str:
    return FORMATS["json"].render(report)


def render_sarif(report: ScanReport) -> str:
    return FORMATS["sarif"].render(report)
