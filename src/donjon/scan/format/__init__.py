"""Report formats: text for people, JSON for programs, SARIF for code-scanning tools."""

from __future__ import annotations

from collections.abc import Callable

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


def _sarif() -> Renderer:
    """SARIF's renderer, imported when first asked for: it describes every rule, the IaC
    catalog's among them, which the node (it renders text for deploy refusals) would
    otherwise load at start."""
    from donjon.scan.format.sarif import SarifRenderer

    return SarifRenderer()


#: Each format's name (as `--format` takes it) and how its renderer is made.
_MAKERS: dict[str, Callable[[], Renderer]] = {
    "text": TextRenderer,
    "json": JsonRenderer,
    "sarif": _sarif,
}
#: The formats' names, in the order `--format` lists them.
FORMATS = tuple(_MAKERS)
_MADE: dict[str, Renderer] = {}


def renderer_for(name: str) -> Renderer:
    """The renderer called `name` (made once); `FormatError` if there is none."""
    made = _MADE.get(name)
    if made is None:
        maker = _MAKERS.get(name)
        if maker is None:
            raise FormatError(f"unknown format {name!r}", hint=f"use one of: {', '.join(FORMATS)}")
        made = _MADE[name] = maker()
    return made


def render_text(report: ScanReport) -> str:
    return renderer_for("text").render(report)


def render_json(report: ScanReport) -> str:
    return renderer_for("json").render(report)


def render_sarif(report: ScanReport) -> str:
    return renderer_for("sarif").render(report)
