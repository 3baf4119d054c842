"""One audit record before the writer gives it a seq and a time: its pre-encoded parts.

The canonical record (sorted keys, compact, ASCII) is

    {"action":..,"actor":..,"detail":..,"outcome":..,"seq":S,"target":..,"ts":T}

Everything but S and T is known when `record()` is called, so the caller's side
encodes it once as one ASCII template with a 0x01 byte where S goes (JSON never
holds a raw control byte: strings escape them), and the writer fills in S and T.
The bytes are those of `json.dumps(record, separators=(",", ":"), sort_keys=True)`.

On the wire to the writer process (audit/wire.py) an entry is the template,
then, only when the record carries an invocation log or grant uses, 0x01 and a
JSON array [log fields or null, [[function, kind, name], ...]]; entries are
separated by a newline, which JSON never holds raw either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from donjon.audit.events import InvocationLog
from donjon.audit.usage import USE_ACTIONS, grant_uses

if TYPE_CHECKING:
    from donjon.audit.events import AuditEvent

__all__ = ["Entry", "encode_entry", "fill", "from_wire", "to_wire", "ts_tail"]


_string = json.encoder.encode_basestring_ascii


def _not_json(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_make = getattr(json.encoder, "c_make_encoder", None)
#: The C encoder json.dumps(separators=(",", ":"), sort_keys=True) builds on each
#: call, built once (no cycle check: a cycle ends in RecursionError, made ValueError).
_encoder = (
    None if _make is None else _make(None, _not_json, _string, None, ":", ",", True, False, True)
)
_slow = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def canonical(value: object) -> str:
    """Canonical JSON: the exact bytes that are hashed are the bytes that are stored."""
    if _encoder is None:  # no C accelerator in this interpreter
        return _slow(value)
    try:
        return "".join(_encoder(value, 0))
    except RecursionError:
        raise ValueError("a circular or too deep value is not JSON") from None


_SEP = b"\x01"
#: (function, kind, name) of each grant a record shows used (audit/usage.py).
Use = tuple[str, str, str]
#: function, version, request_id, outcome, output, duration_ms, memory_kb
LogFields = tuple[str, int, str, str, str, "float | None", "int | None"]


@dataclass(frozen=True, slots=True)
class Entry:
    """A record's template (see above), its invocation log and its grant uses."""

    template: bytes
    log: InvocationLog | None = None
    uses: tuple[Use, ...] = ()


def _template(event: AuditEvent) -> bytes:
    # One f-string (built in one step), not `%` (which parses its format on each call).
    action, actor, detail = _string(event.action), _string(event.actor), canonical(event.detail)
    outcome, target = _string(event.outcome), _string(event.target)
    return (
        f'{{"action":{action},"actor":{actor},"detail":{detail},"outcome":{outcome},'
        f'"seq":\x01,"target":{target},"ts":'
    ).encode()


def _uses(event: AuditEvent) -> tuple[Use, ...]:
    if event.action not in USE_ACTIONS:
        return ()
    detail = event.detail
    if (  # the usual call record, decided without grant_uses' general checks
        event.action == "function.invoke"
        and type(detail) is dict
        and detail.get("secrets_read") is None
        and detail.get("trigger") != "function"
    ):
        return ()
    found = grant_uses(event.action, event.actor, event.target, event.detail)
    return tuple((u.function, u.kind.value, u.name) for u in found)


def encode_entry(event: AuditEvent, log: InvocationLog | None = None) -> Entry:
    """The entry of `event` (raises TypeError/ValueError if its detail is not JSON)."""
    return Entry(_template(event), log, _uses(event))


def ts_tail(ts: float) -> bytes:
    """What follows `"ts":` in every record of a batch appended at `ts`."""
    return b"%r}" % float(ts)


def fill(template: bytes, seq: int, tail: bytes) -> bytes:
    """The record's canonical bytes: the template with its seq and time."""
    head, _, rest = template.partition(_SEP)
    return b"%s%d%s%s" % (head, seq, rest, tail)


def to_wire(event: AuditEvent, log: InvocationLog | None) -> bytes:
    """One entry as the writer process reads it (see the module docstring)."""
    template = _template(event)
    uses = _uses(event)
    if log is None and not uses:
        return template
    fields: Any = None
    if log is not None:
        fields = [
            log.function,
            log.version,
            log.request_id,
            log.outcome,
            log.output,
            log.duration_ms,
            log.memory_kb,
        ]
    return template + _SEP + json.dumps([fields, uses]).encode()


def from_wire(data: bytes) -> Entry:
    """The entry `to_wire` made (in the writer process)."""
    head, _, rest = data.partition(_SEP)
    tail, sep2, extra = rest.partition(_SEP)
    template = head + _SEP + tail
    if not sep2:
        return Entry(template)
    fields, uses = json.loads(extra)
    log = None if fields is None else InvocationLog(*fields)
    return Entry(template, log, tuple((str(f), str(k), str(n)) for f, k, n in uses))
