"""`advisory_watch` (`dependency.vulnerable`): a deployed version became vulnerable.

The advisory watch (lifecycle/advisory_watch.py) writes one `advisory.vulnerable`
record for each finding it is the first to open: a function's version whose vendored
package an advisory now covers. This rule makes each one an alert about the function,
naming the version, the package and installed version, the advisory (and its aliases)
and the fixed versions. The finding's key is the version, package and advisory, so two
advisories on one function are two alerts, never one deduplicated into the other.
"""

from __future__ import annotations

from typing import Any

from donjon.audit.log import CommittedRecord
from donjon.monitor.findings import Finding, Severity, Subject

__all__ = ["KIND", "VulnerableDependency"]

KIND = "dependency.vulnerable"
_SEVERITIES: dict[str, Severity] = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "critical": "critical",
}


def _text(detail: dict[str, Any], name: str) -> str:
    value = detail.get(name)
    return str(value) if isinstance(value, (str, int)) else ""


def _texts(detail: dict[str, Any], name: str) -> list[str]:
    value = detail.get(name)
    return [str(v) for v in value] if isinstance(value, list) else []


class VulnerableDependency:
    """A function's deployed version that new advisory data covers."""

    name = "advisory_watch"
    #: The only records it reads (the monitor feeds it no other: engine.py).
    actions = frozenset({"advisory.vulnerable"})

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        event = record.event
        if event.action != "advisory.vulnerable":
            return []
        detail = dict(event.detail)
        function = _text(detail, "function") or event.target.partition("@")[0]
        version, package = _text(detail, "version"), _text(detail, "package")
        advisory, installed = _text(detail, "advisory"), _text(detail, "installed")
        aliases, fixed = _texts(detail, "aliases"), _texts(detail, "fixed")
        named = advisory + (f" ({', '.join(aliases)})" if aliases else "")
        remedy = f"fixed in {', '.join(fixed)}" if fixed else "no fixed version published"
        return [
            Finding(
                KIND,
                self.name,
                _SEVERITIES.get(_text(detail, "severity"), "high"),
                Subject("function", function),
                f"{function}@{version}: {package} {installed} is affected by {named}; {remedy}",
                (record.seq,),
                now,
                {
                    "version": version,
                    "package": package,
                    "installed": installed,
                    "advisory": advisory,
                    "aliases": aliases,
                    "fixed": fixed,
                    "summary": _text(detail, "summary")[:300],
                },
                key=f"{version}/{package}/{advisory}",
            )
        ]

    def tick(self, now: float) -> list[Finding]:
        return []
