"""First-seen pairs: a principal calling a function it never called, or from a source
(network) it never used, once its learning window is over.

A principal's learning window (`learning_s`) starts when the detector first
hears of it: the `key.create` record of an API key, else the detector's own
start for an API key that existed before (so a key stolen while dormant is
judged on its first call), else its first call (a JWT subject, whose users
come and go). During the window its pairs are learned; after it, a new pair
raises one finding (`first_seen.function`, high; `first_seen.source`,
medium) and is remembered as flagged, never as known: an attacker's pairs do
not become the principal's profile. Sources are compared by network
(/24 for IPv4, /64 for IPv6 by default), since a client's address moves
within its network.

Memory is bounded: at most `max_principals` principals, each with at most
`max_pairs` functions and sources (the least recently used go first; a pair
forgotten that way may be raised again later, never silently learned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from donjon.audit.log import CommittedRecord
from donjon.monitor.calls import UNNAMED_ACTORS, network_of, read_call
from donjon.monitor.findings import Finding, Severity, Subject
from donjon.monitor.robust import BaselineError, Bounded

__all__ = ["FirstSeenDetector"]


@dataclass(slots=True)
class _Pairs:
    known: Bounded[str, bool]
    flagged: Bounded[str, bool]


@dataclass(slots=True)
class _Profile:
    since: float
    functions: _Pairs
    sources: _Pairs
    #: Seq of the record the window started at (its creation or first call), if any.
    origin: int | None = None


class FirstSeenDetector:
    """New (principal, function) and (principal, source network) pairs after learning."""

    name = "first_seen"

    def __init__(
        self,
        learning_s: float,
        *,
        v4_prefix: int = 24,
        v6_prefix: int = 64,
        max_principals: int = 10_000,
        max_pairs: int = 1000,
    ) -> None:
        if not math.isfinite(learning_s) or learning_s < 0:
            raise BaselineError(
                f"a learning window of {learning_s!r} seconds is not a duration",
                hint="DONJON_MONITOR_LEARNING_S takes seconds >= 0",
            )
        if not (0 <= v4_prefix <= 32 and 0 <= v6_prefix <= 128):
            raise BaselineError(
                f"source prefixes /{v4_prefix} and /{v6_prefix} are not network sizes",
                hint="IPv4 0..32, IPv6 0..128",
            )
        self.learning_s = learning_s
        self.v4_prefix, self.v6_prefix = v4_prefix, v6_prefix
        self.max_pairs = max_pairs
        self.profiles: Bounded[str, _Profile] = Bounded(max_principals)
        #: When the detector saw its first record (API keys it never saw created learn from it).
        self.started: float | None = None

    def _profile(self, principal: str, since: float, origin: int | None) -> _Profile:
        def make() -> _Profile:
            return _Profile(
                since,
                _Pairs(Bounded(self.max_pairs), Bounded(self.max_pairs)),
                _Pairs(Bounded(self.max_pairs), Bounded(self.max_pairs)),
                origin,
            )

        return self.profiles.setdefault(principal, make)

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        ts = record.ts  # its commit time, or the clock if behind it (baselines.read_view)
        now = ts if ts < now else now
        if self.started is None:
            self.started = now
        event = record.event
        if event.action == "key.create" and event.outcome == "ok":
            self.profiles.pop(event.target)  # a new key (ids are not reused): learn it anew
            self._profile(event.target, now, record.seq)
            return []
        call = read_call(record)
        if call is None:
            queued = _queued(record)
            return [] if queued is None else self._judge(record, now, *queued)
        if call.principal is None:
            return []
        return self._judge(record, now, call.principal, call.function, call.client)

    def _judge(
        self,
        record: CommittedRecord,
        now: float,
        principal: str,
        function: str,
        client: str | None,
    ) -> list[Finding]:
        """The findings of `principal` calling `function` from `client` (a call's record,
        or an async invoke's `invocation.enqueue`: its delivery's record has no address)."""
        profiles = self.profiles.table
        profile = profiles.get(principal)  # (`profiles.get`, inline)
        if profile is not None:
            profiles.move_to_end(principal)
        else:
            # (`started` is set: `observe` set it before asking)
            started = now if self.started is None else self.started
            since = started if principal.startswith("key:") else now
            profile = self._profile(principal, since, None)
        source = None if client is None else network_of(client, self.v4_prefix, self.v6_prefix)
        functions, sources = profile.functions.known.table, profile.sources.known.table
        if function in functions and (source is None or source in sources):
            functions.move_to_end(function)  # (most calls: both pairs known, used again)
            if source is not None:
                sources.move_to_end(source)
            return []
        learning = now - profile.since < self.learning_s
        findings: list[Finding] = []
        checks: tuple[tuple[str, str | None, _Pairs, Severity], ...] = (
            ("function", function, profile.functions, "high"),
            ("source", source, profile.sources, "medium"),
        )
        for what, value, pairs, severity in checks:
            if value is None:
                continue
            known = pairs.known.table
            if value in known:  # (`pairs.known.get`, inline: a known pair is used again)
                known.move_to_end(value)
                continue
            if learning:
                pairs.known.setdefault(value, _true)
                continue
            if value in pairs.flagged:
                continue
            pairs.flagged.setdefault(value, _true)
            findings.append(self._finding(principal, what, value, severity, record, profile, now))
        return findings

    def _finding(
        self,
        principal: str,
        what: str,
        value: str,
        severity: Severity,
        record: CommittedRecord,
        profile: _Profile,
        now: float,
    ) -> Finding:
        pairs = profile.functions if what == "function" else profile.sources
        verb = "called" if what == "function" else "called from"
        return Finding(
            kind=f"first_seen.{what}",
            detector=self.name,
            severity=severity,
            subject=Subject("principal", principal),
            summary=(
                f"{principal} {verb} {value} for the first time"
                f" ({len(pairs.known)} {what}(s) learned since {profile.since:.0f})"
            ),
            evidence=(record.seq,),
            ts=now,
            detail={
                what: value,
                "target": record.event.target,
                "learned": sorted(pairs.known.keys())[:20],
                "learning_since": profile.since,
                **({"origin_seq": profile.origin} if profile.origin is not None else {}),
            },
        )

    def tick(self, now: float) -> list[Finding]:
        return []


def _true() -> bool:
    return True


def _queued(record: CommittedRecord) -> tuple[str, str, str] | None:
    """(principal, function, address) of an async invoke's `invocation.enqueue` record (the
    invoke API's `Prefer: respond-async`, the Lambda API's Event), None for any other."""
    event = record.event
    client = event.detail.get("client") if event.action == "invocation.enqueue" else None
    if not isinstance(client, str) or event.actor in UNNAMED_ACTORS:
        return None
    return event.actor, event.target, client
