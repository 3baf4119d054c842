"""The strings of a service file the template secret rule (DJ-IAC-021) should see:
every literal outside function environments (those are in the model), in ``custom``,
``provider``, ``functions`` and ``resources``, each at its own line, resolved (a
value from ``${self:}`` is seen where it is used too)."""

from __future__ import annotations

from collections.abc import Mapping

from donjon.scan.iac.cfn.values import RList, RMap, options
from donjon.scan.iac.model import Where
from donjon.scan.iac.serverless.document import Document

__all__ = ["literals"]

_MAX_LITERALS = 2000
#: Top-level sections read; ``service``, ``frameworkVersion``, ``plugins`` hold names.
_SECTIONS = ("custom", "provider", "functions", "resources", "params")


def _environment(path: str) -> bool:
    """``provider.environment`` and ``functions.<name>.environment`` (in the model)."""
    parts = path.split(".")
    return path == "provider.environment" or (
        len(parts) == 3 and parts[0] == "functions" and parts[2] == "environment"
    )


def literals(doc: Document) -> tuple[tuple[Where, str, str], ...]:
    """(where, dotted path, value) for every literal string of the sections above."""
    out: list[tuple[Where, str, str]] = []

    def walk(node: object, resource: str, path: str, line: int) -> None:
        if len(out) >= _MAX_LITERALS or _environment(path):
            return
        for option, _ in options(node):
            if isinstance(option, str):
                out.append((Where(doc.path, line, resource), path, option))
            elif isinstance(option, Mapping):
                named = path in ("functions", "resources.Resources")  # a function key, a logical id
                for key, value in option.items():
                    at = option.line_of(key) if isinstance(option, RMap) else line
                    walk(value, str(key) if named else resource, f"{path}.{key}", at)
            elif isinstance(option, list):
                for index, item in enumerate(option):
                    at = option.line_at(index) if isinstance(option, RList) else line
                    walk(item, resource, f"{path}[{index}]", at)

    for section in _SECTIONS:
        if section in doc.root:
            walk(doc.root[section], section, section, doc.root.line_of(section))
    return tuple(out[:_MAX_LITERALS])
