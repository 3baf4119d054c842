"""`donjon audit export`: the log and its checkpoints, for a third party to verify.

JSON lines (docs/security.md, "Audit log v2: format, checkpoints and proofs"):

    {"type": "header", "format": "donjon-audit-export/1", "verifier_key": "...",
     "since": S, "until": N, "prefix": ["<hex>", ...]}
    {"type": "record", "seq": S, "record": "<record bytes as text>"}   ... up to seq N
    {"type": "checkpoint", "size": n, "ts": t, "note": "<signed note>"} every one with S <= n <= N

`prefix` is the compact range (audit/frontier.py) of the leaves before S, so a
checkpoint's root can be recomputed from a partial export. The export ends at
the newest checkpoint N: records after it are not signed yet and belong to the
next export. `--format syslog` writes the same JSON objects as the MSG of
RFC 5424 lines (facility 13, log audit; severity 6), one per line.

`check_export` is the offline verifier of such a file.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from donjon import boundedjson
from donjon.audit import merkle
from donjon.audit.checkpoint import VerifierKey
from donjon.audit.frontier import Frontier
from donjon.audit.proofs import Checked, ProofInvalid, open_note, record_bytes
from donjon.audit.prover import Prover

__all__ = ["EXPORT_FORMAT", "ExportFormat", "check_export", "export_lines", "json_of_line"]

EXPORT_FORMAT = "donjon-audit-export/1"
ExportFormat = Literal["jsonl", "syslog"]
_CANONICAL = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
#: <PRI> = facility 13 (log audit) * 8 + severity 6 (informational).
_PRI = "<110>"


def _hostname() -> str:
    name = socket.gethostname()
    clean = "".join(c for c in name if 33 <= ord(c) <= 126)[:255]
    return clean or "-"


def _syslog(obj: dict[str, Any], ts: float, host: str) -> str:
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{_PRI}1 {stamp} {host} donjon - {obj['type']} - {_CANONICAL(obj)}"


def export_lines(prover: Prover, since: int = 1, fmt: ExportFormat = "jsonl") -> Iterator[str]:
    """The export's lines (no newline), records since..newest checkpoint. Blocking."""
    since = max(1, since)
    newest = prover.checkpoints(1)
    until = newest[0].checkpoint.size if newest else 0
    since = min(since, until + 1)  # nothing signed after `until` yet: an empty export
    prefix = prover.fold(since - 1).frontier
    header = {
        "type": "header",
        "format": EXPORT_FORMAT,
        "verifier_key": str(prover.key),
        "since": since,
        "until": until,
        "prefix": [h.hex() for h in prefix.hashes],
    }
    host = _hostname()

    def line(obj: dict[str, Any], ts: float) -> str:
        return _CANONICAL(obj) if fmt == "jsonl" else _syslog(obj, ts, host)

    header_ts = newest[0].ts if newest else 0.0
    yield line(header, header_ts)
    for page in prover.records(since, until):
        for seq, record in page:
            # A record edited into bytes that are not UTF-8 is carried all the same (the
            # offline check then finds that the records no longer hash to their checkpoint).
            text = record.decode("utf-8", "replace")
            yield line({"type": "record", "seq": seq, "record": text}, _record_ts(record))
    # Every checkpoint covering an exported record, oldest first, a page at a time.
    for stored in prover.checkpoints_within(since, until):
        obj = {"type": "checkpoint", "size": stored.checkpoint.size, "ts": stored.ts}
        yield line({**obj, "note": stored.note}, stored.ts)


def _record_ts(record: bytes) -> float:
    try:
        ts = boundedjson.loads(record).get("ts")
        return float(ts) if isinstance(ts, int | float) else 0.0
    except (ValueError, AttributeError, OverflowError, boundedjson.JSONTooDeep):
        return 0.0  # a record that is none (edited): the offline check names it


# -- checking (offline) -------------------------------------------------------------


def json_of_line(line: str, number: int) -> dict[str, Any]:
    """The JSON object of a JSON line or of an RFC 5424 line carrying it as MSG."""
    body = line
    if line.startswith("<"):
        parts = line.split(" ", 7)  # PRI+VERSION TS HOST APP PROCID MSGID SD MSG
        if len(parts) != 8:
            raise _bad(number, "is not an RFC 5424 line with a JSON message")
        body = parts[7]
    try:
        obj = boundedjson.loads(body)
    except (ValueError, boundedjson.JSONTooDeep) as e:
        raise _bad(number, "is not JSON") from e
    if not isinstance(obj, dict):
        raise _bad(number, "is not a JSON object")
    return obj


def _bad(number: int, what: str) -> ProofInvalid:
    return ProofInvalid(
        f"line {number} of the export {what}",
        hint="verify the file `donjon audit export` wrote, unchanged",
    )


def check_export(lines: Iterable[str], key: VerifierKey) -> Checked:
    """Check every record of an export against every checkpoint in it.

    Raise ProofInvalid at the first thing that does not hold.
    """
    numbered = ((n, line) for n, line in enumerate(lines, 1) if line.strip())
    first = next(numbered, None)
    if first is None:
        raise ProofInvalid("the export is empty", hint="export again")
    header = json_of_line(first[1], first[0])
    if header.get("type") != "header" or header.get("format") != EXPORT_FORMAT:
        raise _bad(first[0], f"is not a {EXPORT_FORMAT} header")
    since, until = header.get("since"), header.get("until")
    raw_prefix = header.get("prefix")
    if not isinstance(since, int) or since < 1 or not isinstance(raw_prefix, list):
        raise _bad(first[0], "has no valid since and prefix")
    if not isinstance(until, int) or isinstance(until, bool) or until < since - 1:
        raise _bad(first[0], f"has no valid until (a size from {since - 1} on)")
    try:
        prefix = [bytes.fromhex(h) for h in raw_prefix]
    except (ValueError, TypeError) as e:
        raise _bad(first[0], "has a prefix that is not hex hashes") from e
    if len(prefix) != (since - 1).bit_count() or any(len(h) != merkle.HASH_SIZE for h in prefix):
        raise _bad(first[0], f"has a prefix that is not the compact range of {since - 1} leaves")
    frontier = Frontier(since - 1, prefix)
    leaves: list[bytes] = []
    checkpoints: list[tuple[int, int, object]] = []
    for number, line in numbered:
        obj = json_of_line(line, number)
        kind = obj.get("type")
        if kind == "record":
            _check_record(obj, since + len(leaves), number, checkpoints)
            leaves.append(merkle.leaf_hash(record_bytes(obj["record"], f"line {number}'s record")))
        elif kind == "checkpoint":
            checkpoints.append((number, len(leaves), obj.get("note")))
        else:
            raise _bad(number, f"has an unknown type {kind!r}")
    last = since - 1 + len(leaves)
    if last != until:
        # The header is not signed: this tells a cut file from a whole one, not a forger.
        raise ProofInvalid(
            f"the export holds records {since}..{last} but its header says until {until}: "
            "it was cut short (or extended)",
            hint="export again; a whole export ends at the checkpoint its header names",
        )
    sizes = _check_checkpoints(frontier, leaves, checkpoints, key)
    if leaves and (not sizes or sizes[-1] < last):
        raise ProofInvalid(
            f"records {max(sizes[-1] + 1 if sizes else since, since)}..{last} are not covered "
            "by any checkpoint in the export",
            hint="an export ends at its newest checkpoint; this one was extended or cut",
        )
    return Checked(
        "export",
        f"records {since}..{last} ({len(leaves)}) verified against {len(sizes)} "
        f"checkpoint(s) signed by {key.origin}",
    )


def _check_record(obj: dict[str, Any], expected: int, number: int, checkpoints: list[Any]) -> None:
    if checkpoints:
        raise _bad(number, "is a record after the checkpoints")
    seq, record = obj.get("seq"), obj.get("record")
    if seq != expected or not isinstance(record, str):
        raise ProofInvalid(
            f"line {number}: expected record {expected}, found {seq!r}: "
            "a record is missing, inserted or out of order",
            hint="the export was altered",
        )
    try:
        body = boundedjson.loads(record)
    except (ValueError, boundedjson.JSONTooDeep) as e:
        raise ProofInvalid(f"record {seq} is not JSON: it was edited", hint="") from e
    if not isinstance(body, dict) or body.get("seq") != seq:
        raise ProofInvalid(f"record {seq} holds another record's seq", hint="it was moved")


def _check_checkpoints(
    frontier: Frontier,
    leaves: list[bytes],
    checkpoints: list[tuple[int, int, object]],
    key: VerifierKey,
) -> list[int]:
    """Recompute the root at each checkpoint's size; the sizes checked, in order."""
    since0 = frontier.size  # leaves before the export
    opened = []
    for number, _, note in checkpoints:
        cp = open_note(note, key, f"the checkpoint on line {number}")
        if not since0 < cp.size <= since0 + len(leaves):
            raise ProofInvalid(
                f"the checkpoint on line {number} (size {cp.size}) covers no record of the export",
                hint="an export holds only the checkpoints covering its records",
            )
        opened.append((cp.size, cp.root, number))
    opened.sort()
    running = frontier.copy()
    for size, root, number in opened:
        while running.size < size:
            running.append(leaves[running.size - since0])
        if running.root() != root:
            raise ProofInvalid(
                f"records up to {size} do not hash to the root of the checkpoint on line "
                f"{number}: a record at or before {size} was altered, added or removed",
                hint="compare with another copy of the log; the signed checkpoint stands",
            )
    return [size for size, _, _ in opened]
