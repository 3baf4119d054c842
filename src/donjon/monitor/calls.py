"""What the learned detectors read from the audit log: calls, deploys and removals.

A `function.invoke` record (gateway/invoke.py) names the caller (actor), the
function version (target `name@version`), the outcome ("ok" or the error's
class name), and in its detail the wall time (`duration_ms`), the memory limit
the call ran under (`memory_mb`) and the caller's address (`client`). A record
missing a field simply does not feed the detectors that need it.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from donjon.audit.log import CommittedRecord

__all__ = [
    "UNNAMED_ACTORS",
    "Call",
    "Change",
    "network_of",
    "read_call",
    "read_change",
]

#: Actors that are not a principal: anyone (public triggers), the scheduler, and the event
#: sources whose calls are recorded under their trigger's kind (gateway/actors.py). Taken
#: for principals, every tenant's webhook deliveries were one `webhook` principal: a new
#: tenant's first delivery after a day was a high first_seen.function alert, answered in
#: block mode by a throttle of a `key:webhook` that exists nowhere.
UNNAMED_ACTORS = frozenset({"public", "schedule", "webhook", "s3", "postgres", "system", ""})


class Call(NamedTuple):
    """One invocation, as the baselines see it.

    (A named tuple, not a frozen dataclass: one is made for every call record the
    monitor examines, and a frozen dataclass sets each of its eight fields through
    `object.__setattr__`, which cost as much as the rest of reading the record.)
    """

    seq: int
    #: The function's name, and its version as `name@version` (the record's target).
    function: str
    version: str
    #: The principal's label, or None for public and scheduled calls.
    principal: str | None
    ok: bool
    duration_ms: float | None
    memory_mb: float | None
    client: str | None

    @property
    def gb_seconds(self) -> float | None:
        """What the call cost: its wall time x its memory limit, in GB-seconds."""
        if self.duration_ms is None or self.memory_mb is None:
            return None
        return (self.duration_ms / 1000.0) * (self.memory_mb / 1024.0)


@dataclass(frozen=True, slots=True)
class Change:
    """A deploy of a new version (`version` set) or a function's removal (`version` None)."""

    seq: int
    function: str
    version: str | None


def _number(value: Any) -> float | None:
    if type(value) is float:  # (what JSON gives, tested first: two per call record)
        return value if math.isfinite(value) and value >= 0 else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


#: The last record read and its call: every learned detector reads each record in turn.
_last: tuple[CommittedRecord | None, Call | None] = (None, None)


def read_call(record: CommittedRecord) -> Call | None:
    """The call a `function.invoke` record describes, or None for any other record."""
    global _last  # noqa: PLW0603 - a one-entry memo of the record in hand
    last = _last  # read once: another node's loop in another thread may replace it
    if last[0] is record:
        return last[1]
    event = record.event
    name, at, version = event.target.rpartition("@")
    if event.action != "function.invoke" or not at or not name or not version:
        _last = (record, None)
        return None
    detail = event.detail
    client = detail.get("client")
    # (`_number`'s tests of a float and an int, inline: what JSON gives, two per call record)
    duration = detail.get("duration_ms")
    if type(duration) is not float or not (duration >= 0 and duration != _INF):
        duration = _number(duration)
    memory = detail.get("memory_mb")
    if type(memory) is int and memory >= 0:
        memory = float(memory)
    elif type(memory) is not float or not (memory >= 0 and memory != _INF):
        memory = _number(memory)
    # (the tuple made directly: what `Call(...)`'s generated `__new__` does, without it)
    call: Call = _new_call(
        Call,
        (
            record.seq,
            name,
            event.target,
            # A retry (an async delivery's attempt after the first) is the platform's
            # doing under its function's retry policy: counted as its caller's call, a
            # failing function got each caller's key throttled for its own retries.
            None
            if event.actor in UNNAMED_ACTORS or ("attempt" in detail and detail["attempt"] != 1)
            else event.actor,
            event.outcome == "ok",
            duration,
            memory,
            client if isinstance(client, str) and client not in {"", "-"} else None,
        ),
    )
    _last = (record, call)
    return call


_INF = math.inf
_new_call = tuple.__new__


def read_change(record: CommittedRecord) -> Change | None:
    """A successful deploy of a new version, or a removal; None for anything else
    (a rejected deploy, or an unchanged one, changes nothing the baselines learned)."""
    event = record.event
    if event.action == "function.deploy" and event.outcome == "ok":
        name, at, _ = event.target.rpartition("@")
        return Change(record.seq, name, event.target) if at and name else None
    if event.action == "function.delete" and event.outcome == "ok":
        return Change(record.seq, event.target, None)
    return None


@functools.lru_cache(maxsize=4096)
def network_of(address: str, v4_prefix: int, v6_prefix: int) -> str:
    """The network an address belongs to, as the first-seen detector compares sources
    (`203.0.113.0/24`); an address that does not parse is kept as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    prefix = v4_prefix if ip.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
