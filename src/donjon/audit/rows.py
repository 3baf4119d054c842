"""The rows of a run of records, as the writer inserts them: seq, canonical bytes, leaf hash.

`fill_rows` gives each entry its seq and the batch's time (audit/entry.py's
template with S and T filled in), hashes it as an RFC 6962 leaf
(SHA-256(0x00 || record)), and lays the rows out flat, `seq, record, hash`
after one another (the record and the hash as bytearrays, see `_FILL`): the
parameters of one multi-row INSERT (audit/rawsql.py),
so the driver binds them in one call and SQLite inserts them in one statement,
without the interpreter between two rows. An entry may be a bare template, an
`Entry`, or an entry as the writer process reads it from the node (audit/entry.py's
`to_wire`: a template, then 0x01 and its invocation log and grant uses): only
those with a log or grant uses become `Entry` objects; the usual record stays
the bytes it came as.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from donjon.audit.entry import Entry, from_wire

__all__ = ["Rows", "fill_rows", "row_tuples"]

_SEP = b"\x01"
#: The leaf hash's prefix (RFC 6962) and the record's bytes, in one bytearray: hashed as
#: it is, then its first byte dropped, which a bytearray does in place without a copy
#: (no `b"\x00" + record` made per record). A bytearray, as its hash in `params`: the
#: sqlite3 module binds one as a BLOB directly, where it first looks for an adapter for
#: bytes (a failed attribute lookup on its protocol type, formatted and thrown away:
#: about 40 % of what binding a row of bytes costs it). The stored BLOB is the record.
_FILL = bytearray(b"\x00%s%d%s%s")
#: Columns of an audit_log row: seq, record, hash.
WIDTH = 3


@dataclass(frozen=True, slots=True)
class Rows:
    """The rows of `count` records, flat, with their leaf hashes and their extras."""

    count: int
    #: seq, record, hash of each record, one after another.
    params: list[Any]
    #: The leaf hash of each record, in order.
    hashes: list[bytes]
    #: (seq, entry) of each record that carries an invocation log or grant uses.
    extras: list[tuple[int, Entry]]


def fill_rows(entries: Sequence[Entry | bytes], after: int, tail: bytes) -> Rows:
    """The rows of `entries` as the records after seq `after`, each ending with `tail`
    (entry.ts_tail). Raises ValueError (or TypeError) for a wire entry that is not
    what `to_wire` makes."""
    params: list[Any] = []
    hashes: list[bytes] = []
    extras: list[tuple[int, Entry]] = []
    add = hashes.append
    seq = after
    for entry in entries:
        seq += 1
        if type(entry) is bytes:
            head, _, rest = entry.partition(_SEP)
            # find(), not `in`: bytes' `in` tries the operand as an int first, and the
            # TypeError it makes and clears costs more than the search.
            if rest.find(_SEP) >= 0:  # a wire entry with its log or grant uses
                full = from_wire(entry)
                extras.append((seq, full))
                head, _, rest = full.template.partition(_SEP)
        else:
            if not isinstance(entry, Entry):
                raise TypeError(f"an audit entry is bytes or an Entry, not {type(entry).__name__}")
            head, _, rest = entry.template.partition(_SEP)
            if entry.log is not None or entry.uses:
                extras.append((seq, entry))
        record = _FILL % (head, seq, rest, tail)
        digest = sha256(record).digest()  # merkle.leaf_hash: SHA-256(0x00 || record)
        # The record alone, as stored. (A bytearray's % makes a bytearray; typeshed
        # says bytes.)
        del record[0]  # type: ignore[attr-defined]  # a bytearray; typeshed says bytes
        params += (seq, record, bytearray(digest))
        add(digest)
    return Rows(seq - after, params, hashes, extras)


def row_tuples(params: list[Any]) -> list[tuple[Any, ...]]:
    """The flat `params` as one (seq, record, hash) tuple per row (for executemany)."""
    it = iter(params)
    return list(zip(it, it, it, strict=True))
