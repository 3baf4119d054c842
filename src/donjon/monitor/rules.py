"""The deterministic rules: each a `Detector` over the audit records.

- `auth_failures` (`auth.credential_stuffing`): at least `per_source` failed
  authentications (`auth.denied`) from one client address within `window_s`,
  or failures naming at least `distinct_keys` different API keys or actors,
  from anywhere, within `window_s`. Denials are aggregated on their way to the
  log (audit/denials.py: the first of a source's window at once, the rest as
  one record with `count: n` when the window closes), so the rule sums the
  records' `count`, and, fed live by `DenialLog`'s listener (`note_denial`),
  counts the denials not written yet too: it fires at the next tick instead
  of when the aggregate lands. Its evidence is always records already in the
  log (the source's first denial is written at once). The key ids refused
  keys carried reach it through that listener only: they are never recorded.
- `egress_refused` (`egress.refused`): the egress proxy refused a function's
  connection (`egress.connect`, outcome `denied`).
- `sandbox_violation` (`sandbox.violation`): a runtime policy blocked or
  flagged something (`policy.block`: a process call stopped by seccomp, a
  refused write...; `policy.alert`), or a call was killed for its memory
  (`function.invoke` ending `FunctionMemoryExceeded`: the OOM killer).
- `scan_skipped` (`deploy.scan_skipped`): a function was deployed with the
  deploy gate's scan skipped (`--unsafe-skip-scan`).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from donjon.audit.log import AuditEvent, CommittedRecord
from donjon.client_network import client_network
from donjon.monitor.findings import Finding, Severity, Subject

__all__ = [
    "KILLED_OUTCOMES",
    "AuthFailures",
    "EgressRefused",
    "SandboxViolation",
    "ScanSkipped",
    "function_of",
]

#: Evidence seqs kept per tracked subject (a finding cites the newest ones).
_MAX_EVIDENCE = 64


def function_of(event: AuditEvent) -> str:
    """The function a record is about: detail `function`, else the target's `NAME@VERSION`."""
    name = event.detail.get("function")
    if isinstance(name, str) and name:
        return name
    return event.target.partition("@")[0]


def _named(event: AuditEvent) -> str:
    """What a denial record says the refused credential named: a SigV4 request's key id,
    or the actor when it is a principal (not `anonymous`)."""
    key = event.detail.get("key_id")
    if isinstance(key, str) and key:
        return key
    return event.actor if event.actor not in ("anonymous", "*", "") else ""


def _count(detail: Mapping[str, Any]) -> int:
    n = detail.get("count", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


@dataclass(slots=True)
class _Tally:
    """Denials of one source within the window.

    Both deques keep at most `cap` entries (the threshold and some): each entry is
    at least one denial, so a full deque inside the window is past the threshold,
    and a flood costs bounded memory whatever its rate.
    """

    cap: int
    #: (time seen, count) of the denial records seen.
    recorded: deque[tuple[float, int]] = field(init=False)
    #: Times of the denials seen live (DenialLog's listener), written or not.
    live: deque[float] = field(init=False)
    evidence: deque[int] = field(default_factory=lambda: deque(maxlen=_MAX_EVIDENCE))
    last: float = 0.0

    def __post_init__(self) -> None:
        self.recorded = deque(maxlen=self.cap)
        self.live = deque(maxlen=self.cap)

    def prune(self, since: float) -> None:
        while self.recorded and self.recorded[0][0] < since:
            self.recorded.popleft()
        while self.live and self.live[0] < since:
            self.live.popleft()

    def total(self) -> int:
        # Both count the same denials (the records later than the live feed): the larger.
        return max(sum(n for _, n in self.recorded), len(self.live))


class AuthFailures:
    """Credential stuffing: a burst of failed authentications from one source (an address;
    an IPv6 /64, as a host has a whole one), or across keys."""

    name = "auth_failures"
    #: The only records it reads (the monitor feeds it no other: engine.py).
    actions = frozenset({"auth.denied"})

    def __init__(
        self,
        *,
        per_source: int = 20,
        distinct_keys: int = 10,
        window_s: float = 300.0,
        max_sources: int = 10_000,
    ) -> None:
        self._per_source = max(1, per_source)
        self._distinct = max(1, distinct_keys)
        self._window_s = window_s
        self._max_sources = max(1, max_sources)
        #: Least recently seen first: the one forgotten when `max_sources` are tracked.
        self._sources: OrderedDict[str, _Tally] = OrderedDict()
        #: Key (or actor) -> last time a failure named it, from records and the live feed.
        self._keys: dict[str, float] = {}
        self._key_evidence: deque[int] = deque(maxlen=_MAX_EVIDENCE)

    # -- the feeds --------------------------------------------------------------

    def note_denial(self, event: AuditEvent, client: str, now: float, named: str = "") -> None:
        """DenialLog's listener: a denial as it happens, before its aggregate is written.

        `named` is the key id the refused credential carried: counted here, never
        recorded (audit lines do not tell a live key id from an unknown one).
        """
        if event.action != "auth.denied":
            return
        self._tally(client_network(client), now).live.append(now)
        self._note_key(named or _named(event), now)

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        event = record.event
        if event.action != "auth.denied":
            return []
        client = client_network(str(event.detail.get("client", "-")))
        tally = self._tally(client, now)
        tally.recorded.append((now, _count(event.detail)))
        tally.evidence.append(record.seq)
        self._key_evidence.append(record.seq)
        self._note_key(_named(event), now)
        return self._check(now, {client})

    def tick(self, now: float) -> list[Finding]:
        since = now - self._window_s
        for client in [c for c, t in self._sources.items() if t.last < since]:
            del self._sources[client]
        for key in [k for k, at in self._keys.items() if at < since]:
            del self._keys[key]
        return self._check(now, set(self._sources))

    # -- counting ---------------------------------------------------------------

    def _tally(self, client: str, now: float) -> _Tally:
        tally = self._sources.get(client)
        if tally is None:
            if len(self._sources) >= self._max_sources:
                self._sources.popitem(last=False)
            tally = self._sources[client] = _Tally(self._per_source + 64)
        else:
            self._sources.move_to_end(client)
        tally.last = now
        return tally

    def _note_key(self, key: str, now: float) -> None:
        """Remember that a failure named `key` (a key id, or a principal) now."""
        if key and (key in self._keys or len(self._keys) < self._max_sources):
            self._keys[key] = now

    def _check(self, now: float, clients: set[str]) -> list[Finding]:
        since = now - self._window_s
        findings: list[Finding] = []
        for client in clients:
            tally = self._sources.get(client)
            if tally is None:
                continue
            tally.prune(since)
            total = tally.total()
            # Evidence must be records already in the log: wait for the first one.
            if total >= self._per_source and tally.evidence:
                findings.append(
                    Finding(
                        "auth.credential_stuffing",
                        self.name,
                        "high",
                        Subject("source", client),
                        f"{total} failed authentications from {client} in {self._window_s:g} s",
                        tuple(tally.evidence),
                        now,
                        {"failures": total, "window_s": self._window_s, "client": client},
                    )
                )
        keys = [k for k, at in self._keys.items() if at >= since]
        if len(keys) >= self._distinct and self._key_evidence:
            findings.append(
                Finding(
                    "auth.credential_stuffing",
                    self.name,
                    "high",
                    Subject("node", "authentication"),
                    f"failed authentications naming {len(keys)} different keys "
                    f"in {self._window_s:g} s",
                    tuple(self._key_evidence),
                    now,
                    {"distinct_keys": len(keys)},
                )
            )
        return findings


class EgressRefused:
    """A function's connection refused by the egress proxy."""

    name = "egress_refused"
    #: The only records it reads (the monitor feeds it no other: engine.py).
    actions = frozenset({"egress.connect"})

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        event = record.event
        if event.action != "egress.connect" or event.outcome != "denied":
            return []
        function = function_of(event)
        d = event.detail
        destination = str(d.get("destination", "?"))
        return [
            Finding(
                "egress.refused",
                self.name,
                "medium",
                Subject("function", function),
                f"{event.target} tried to reach {destination} ({d.get('reason', 'refused')})",
                (record.seq,),
                now,
                {
                    "version": d.get("version"),
                    "destination": destination,
                    "reason": d.get("reason", ""),
                    "request_id": d.get("request_id", ""),
                    "count": _count(d),
                },
            )
        ]

    def tick(self, now: float) -> list[Finding]:
        return []


#: function.invoke outcomes that say the sandbox killed the call, and how bad that is.
_KILLS: dict[str, tuple[Severity, str]] = {
    "FunctionMemoryExceeded": ("medium", "killed for exceeding its memory (OOM)"),
}
#: The outcomes a `sandbox.violation` finding's detail names when the sandbox killed the
#: call (no runtime policy saw anything): what the call's event made it take.
KILLED_OUTCOMES: frozenset[str] = frozenset(_KILLS)


class SandboxViolation:
    """What the sandbox stopped or flagged: runtime policies, blocked process calls, OOM kills."""

    name = "sandbox_violation"
    #: The only records it reads (the monitor feeds it no other: engine.py).
    actions = frozenset({"policy.block", "policy.alert", "function.invoke"})

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        event = record.event
        if event.action == "function.invoke" and event.outcome not in _KILLS:
            return []  # (most records: a call that ended without a kill)
        d = event.detail
        function = function_of(event)
        key = ""
        if event.action in ("policy.block", "policy.alert"):
            blocked = event.action == "policy.block"
            policy = str(d.get("policy", "?"))
            what = "blocked" if blocked else "flagged"
            severity: Severity = "high" if blocked else "medium"
            summary = (
                f"{event.target}: runtime policy {policy} {what} {str(d.get('seen', ''))[:120]}"
            )
            detail = {
                "policy": policy,
                "action": event.action,
                "request_id": d.get("request_id", ""),
            }
        elif event.action == "function.invoke" and event.outcome in _KILLS:
            severity, why = _KILLS[event.outcome]
            summary = f"{event.target}: a call was {why}"
            detail = {"outcome": event.outcome, "request_id": d.get("request_id", "")}
            # Deduplicated apart from the policies' findings: a kill is answered by nothing
            # (responses.py), and must not stand for a policy block that follows.
            key = event.outcome
        else:
            return []
        return [
            Finding(
                "sandbox.violation",
                self.name,
                severity,
                Subject("function", function),
                summary,
                (record.seq,),
                now,
                detail,
                key,
            )
        ]

    def tick(self, now: float) -> list[Finding]:
        return []


class ScanSkipped:
    """A deploy that skipped the scan gate."""

    name = "scan_skipped"
    #: The only records it reads (the monitor feeds it no other: engine.py).
    actions = frozenset({"function.deploy"})

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        event = record.event
        if event.action != "function.deploy" or event.detail.get("unsafe_skip_scan") is not True:
            return []
        return [
            Finding(
                "deploy.scan_skipped",
                self.name,
                "high",
                Subject("function", function_of(event)),
                f"{event.actor} deployed {event.target} without the deploy scan",
                (record.seq,),
                now,
                {"deployer": event.actor, "outcome": event.outcome},
            )
        ]

    def tick(self, now: float) -> list[Finding]:
        return []
