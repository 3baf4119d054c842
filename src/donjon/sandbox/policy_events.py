"""What a call did that its runtime policies watch, as the gateway learns it.

Two sources, trusted differently:

- the supervisor's `policy` control message (child_processes): the kernel
  stopped the process call and the supervisor saw it (runtime/watch.py);
  the mode comes from the function's own configuration, never the message;
- the call's reply head (`policy`: tmp_write, read_own_code in alert mode):
  the runtime's best-effort audit hook, in the function's own process. The
  function could write that head itself, so it is kept only for policies in
  alert mode, and only ever adds an alert about the function itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from donjon.manifest.policies import PolicyMode, RuntimePolicies

__all__ = ["CallPolicyEvents", "PolicyEvent", "from_control", "from_head"]

_MAX_SEEN = 200
_HOOKED = ("tmp_write", "read_own_code")
_MAX_PER_CALL = 4


@dataclass(frozen=True)
class PolicyEvent:
    """One policy's finding for one call: `action` is "alert" or "block"."""

    policy: str
    action: str
    seen: str


def _seen(value: object) -> str:
    """What was seen, as text any store and any JSON answer takes: a lone surrogate (a
    file name's undecodable byte, perhaps chosen by a caller's event) becomes its escape
    (`\\udcff`), or the records holding it would fail the alerts, the audit listing and
    the quarantine they call for."""
    return str(value)[:_MAX_SEEN].encode("utf-8", "backslashreplace").decode("utf-8")


def from_control(msg: dict[str, Any], policies: RuntimePolicies) -> PolicyEvent | None:
    """The supervisor's report of a process call (None if it is not one)."""
    mode = policies.child_processes
    if msg.get("policy") != "child_processes" or mode is PolicyMode.ALLOW:
        return None
    return PolicyEvent("child_processes", mode.value, _seen(msg.get("seen", "")))


def from_head(head: dict[str, Any] | None, policies: RuntimePolicies) -> list[PolicyEvent]:
    """The runtime's alerts in a reply head, for the policies in alert mode only."""
    said = head.get("policy") if head is not None else None
    if not isinstance(said, dict):
        return []
    out = []
    for name in _HOOKED:
        if getattr(policies, name) is PolicyMode.ALERT and name in said:
            out.append(PolicyEvent(name, "alert", _seen(said[name])))
    return out


class CallPolicyEvents:
    """The policy events of one sandbox's calls in flight, by call id."""

    def __init__(self, policies: RuntimePolicies) -> None:
        self._policies = policies
        self._seen: dict[int, list[PolicyEvent]] = {}

    def open(self, call_id: int) -> None:
        self._seen[call_id] = []

    def close(self, call_id: int) -> None:
        self._seen.pop(call_id, None)

    def on_message(self, msg: dict[str, Any]) -> None:
        """The supervisor's `policy` message (one per call and policy; a few kept at most)."""
        seen = self._seen.get(int(msg["id"]))
        event = from_control(msg, self._policies)
        if seen is not None and event is not None and len(seen) < _MAX_PER_CALL:
            seen.append(event)

    def of(self, call_id: int, head: dict[str, Any] | None) -> tuple[PolicyEvent, ...]:
        """What call `call_id` did that a policy watches, the reply `head`'s alerts included."""
        return (*self._seen.get(call_id, ()), *from_head(head, self._policies))
