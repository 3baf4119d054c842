"""The end-of-support dates of managed function runtimes (``data/runtimes.json``).

A dated table, written from the providers' published runtime-support pages and
checked against the day of the scan: a rule asks `lifecycle(cloud, runtime)` for a
runtime's dates and `RuntimeTable.stage(...)` for where it stands today. Runtime names
are matched in the spelling of each cloud and of the templates that name them:
``python3.8`` (Lambda, and Azure as the Terraform loader writes it), ``python38``
(Google), ``nodejs18.x``, ``nodejs18``, ``node18`` and ``node18.x`` are one key per
cloud. A name the table does not hold (a newer runtime, a container image, a typo) has
no stage: nothing is reported for it.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources

from donjon.scan.iac.model import Cloud

__all__ = ["Lifecycle", "RuntimeTable", "Stage", "runtime_table"]


class Stage(enum.IntEnum):
    """Where a runtime stands on a given day, worst last."""

    SUPPORTED = 0
    ENDING = 1  # deprecated within the warning window
    DEPRECATED = 2  # no more security patches
    CREATE_BLOCKED = 3  # new functions refused
    UPDATE_BLOCKED = 4  # existing functions frozen


@dataclass(frozen=True)
class Lifecycle:
    """One runtime's dates (None: not scheduled)."""

    runtime: str
    deprecated: date | None
    create_blocked: date | None
    update_blocked: date | None

    def stage(self, today: date, warn_days: int) -> Stage:
        """Where the runtime stands on `today` (`warn_days` before deprecation: ENDING)."""
        if self.update_blocked and today >= self.update_blocked:
            return Stage.UPDATE_BLOCKED
        if self.create_blocked and today >= self.create_blocked:
            return Stage.CREATE_BLOCKED
        if self.deprecated and today >= self.deprecated:
            return Stage.DEPRECATED
        if self.deprecated and (self.deprecated - today).days <= warn_days:
            return Stage.ENDING
        return Stage.SUPPORTED


_PREFIX = re.compile(r"^(nodejs|node|python|ruby|java|go|dotnetcore|dotnet|powershell|php)[-_ ]?")

#: Languages whose runtimes are named by major version only (``8.0`` is ``8``).
_WHOLE_MAJORS = frozenset({"dotnet", "node", "java"})


def runtime_key(runtime: str) -> str:
    """One spelling per runtime: lower case, no ``.x``, ``node`` for Node.js, no dots
    in the version (``provided.al2`` is kept as it is)."""
    text = runtime.strip().lower()
    if text.startswith("provided"):
        return text
    text = text.removesuffix(".x").replace("-isolated", "")  # Azure's dotnet-isolated|8.0
    match = _PREFIX.match(text)
    if match is None:
        return text
    language = "node" if match.group(1) == "nodejs" else match.group(1)
    version = text[match.end() :].lstrip("v")
    if language in _WHOLE_MAJORS:  # dotnet 8.0 and dotnet8 are one runtime
        version = version.removesuffix(".0")
    return language + version.replace(".", "")


@dataclass(frozen=True)
class RuntimeTable:
    """The table as read: when it was checked, and each cloud's runtimes by key."""

    as_of: date
    by_cloud: dict[Cloud, dict[str, Lifecycle]]

    def lifecycle(self, cloud: Cloud, runtime: str) -> Lifecycle | None:
        return self.by_cloud.get(cloud, {}).get(runtime_key(runtime))

    def age_days(self, today: date) -> int:
        return (today - self.as_of).days


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


@cache
def runtime_table() -> RuntimeTable:
    """The packaged table, read once (a broken file is a bug: it fails loudly)."""
    raw = json.loads(
        resources.files("donjon.scan.iac").joinpath("data/runtimes.json").read_text("utf-8")
    )
    by_cloud: dict[Cloud, dict[str, Lifecycle]] = {}
    for cloud in Cloud:
        table: dict[str, Lifecycle] = {}
        for name, dates in raw.get(cloud.value, {}).items():
            table[runtime_key(name)] = Lifecycle(
                name,
                _day(dates["deprecated"]),
                _day(dates["create_blocked"]),
                _day(dates["update_blocked"]),
            )
        by_cloud[cloud] = table
    return RuntimeTable(date.fromisoformat(raw["as_of"]), by_cloud)
