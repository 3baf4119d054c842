"""S3 event notifications: a document's records, an s3 trigger's filters, one envelope each.

A notification document is what S3 puts on an SQS queue (or an SNS topic wraps,
or MinIO and Ceph POST): ``{"Records": [record, ...]}``, each record naming its
event (``ObjectCreated:Put``; MinIO writes ``s3:ObjectCreated:Put``), its bucket
and its object key, URL-encoded as a form value (``a+b%2Fc.jpg`` is the key
``a b/c.jpg``). When a notification is configured, S3 first sends a test
message (``"Event": "s3:TestEvent"``): it holds no record and is skipped.

Each record that passes the trigger's filters (event, bucket, prefix and suffix,
matched on the decoded key) becomes one envelope, whose event is what Lambda
gives a handler for it: ``{"Records": [record]}``, the record as it came.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from donjon import boundedjson
from donjon.manifest.event_triggers import S3Spec
from donjon.triggers.envelope import Envelope
from donjon.triggers.source_errors import MalformedEvent

__all__ = [
    "MAX_DELIVERY_ID",
    "MAX_RECORDS",
    "S3Record",
    "envelopes",
    "matches",
    "parse_notification",
    "pushed_envelopes",
]

#: Records one document may hold (S3 sends one; a document past this is refused whole).
MAX_RECORDS = 1000
#: The longest delivery id the queue stores (its `delivery_id` column).
MAX_DELIVERY_ID = 256
_HINT = "an S3 event notification is a JSON object with a `Records` list (docs/triggers.md)"


@dataclass(frozen=True)
class S3Record:
    """One record of a notification, with the fields the filters read."""

    #: The event without its ``s3:`` prefix, as S3 writes it: ``ObjectCreated:Put``.
    event_name: str
    bucket: str
    #: The object key, decoded.
    key: str
    #: S3's ordering token for the key's events (absent in some stores' records).
    sequencer: str | None
    #: The record as it came (its key still encoded).
    raw: dict[str, Any]

    @property
    def delivery_id(self) -> str:
        """Stable across redeliveries of the record: bucket/key/sequencer (or, without a
        sequencer, bucket/key/a digest of the record); past `MAX_DELIVERY_ID` characters (a
        key may be 1,024 bytes), ``sha256:`` and the digest of that id, which the queue's
        column holds."""
        tail = self.sequencer
        if tail is None:
            canonical = json.dumps(self.raw, sort_keys=True, separators=(",", ":"))
            tail = hashlib.sha256(canonical.encode()).hexdigest()[:32]
        full = f"{self.bucket}/{self.key}/{tail}"
        if len(full) <= MAX_DELIVERY_ID:
            return full
        return "sha256:" + hashlib.sha256(full.encode()).hexdigest()


def parse_notification(body: bytes | str) -> list[S3Record]:
    """The records of a notification document (none for S3's test event), or
    `MalformedEvent` saying what is wrong; an SNS envelope around it is opened."""
    document = _json(body, "the notification")
    if not isinstance(document, dict):
        raise MalformedEvent("the notification is not a JSON object", hint=_HINT)
    if document.get("Type") == "Notification" and "Message" in document:
        message = document["Message"]
        if not isinstance(message, str):
            raise MalformedEvent("the SNS notification's Message is not a string", hint=_HINT)
        document = _json(message, "the SNS notification's Message")
        if not isinstance(document, dict):
            raise MalformedEvent("the SNS notification's Message is not a JSON object", hint=_HINT)
    if document.get("Event") == "s3:TestEvent":
        return []
    records = document.get("Records")
    if not isinstance(records, list):
        raise MalformedEvent("the notification has no `Records` list", hint=_HINT)
    if len(records) > MAX_RECORDS:
        raise MalformedEvent(
            f"the notification holds {len(records)} records, more than {MAX_RECORDS}",
            hint="S3 sends one record per notification",
        )
    return [_record(r, i) for i, r in enumerate(records)]


def matches(spec: S3Spec, record: S3Record) -> bool:
    """Whether the trigger takes `record`: its event is one of `events` (``*`` for any
    of a kind), and its bucket, prefix and suffix filters hold on the decoded key."""
    if spec.bucket is not None and record.bucket != spec.bucket:
        return False
    if not (record.key.startswith(spec.prefix) and record.key.endswith(spec.suffix)):
        return False
    for wanted in spec.events:
        name = wanted.removeprefix("s3:")
        if name.endswith(":*"):
            if record.event_name.startswith(name[:-1]):
                return True
        elif record.event_name == name:
            return True
    return False


def envelopes(function: str, spec: S3Spec, records: list[S3Record]) -> list[Envelope]:
    """One envelope for `function` per record the trigger takes, in the records' order."""
    return [
        Envelope(
            function=function,
            event=json.dumps({"Records": [r.raw]}, separators=(",", ":")).encode(),
            trigger="s3",
            source=f"s3://{r.bucket}",
            type=f"com.amazonaws.s3.{r.event_name}",
            delivery_id=r.delivery_id,
            subject=r.key,
        )
        for r in records
        if matches(spec, r)
    ]


def pushed_envelopes(
    function: str, spec: S3Spec, body: bytes | str
) -> list[Envelope] | tuple[str, str]:
    """`envelopes` of the notification `body` (pushed, or an SQS message's), or its
    `MalformedEvent`'s message and hint. A pure function of its arguments, so a large
    body's are made off the event loop (gateway/hooks_s3.py, gateway/event_sources.py) to
    the same envelopes (an exception does not come back from a child whole)."""
    try:
        records = parse_notification(body)
    except MalformedEvent as e:
        return e.message, e.hint
    return envelopes(function, spec, records)


def _json(text: bytes | str, what: str) -> Any:
    try:
        return boundedjson.loads(text)
    except boundedjson.JSONTooDeep as e:
        raise MalformedEvent(f"{what} nests too deeply: {e.message}", hint=_HINT) from e
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MalformedEvent(f"{what} is not JSON: {e}", hint=_HINT) from e


def _record(raw: object, index: int) -> S3Record:
    where = f"record {index}"
    if not isinstance(raw, dict):
        raise MalformedEvent(f"{where} is not a JSON object", hint=_HINT)
    name = raw.get("eventName")
    s3 = raw.get("s3")
    if not isinstance(name, str) or not name:
        raise MalformedEvent(f"{where} has no eventName", hint=_HINT)
    if not isinstance(s3, dict):
        raise MalformedEvent(f"{where} has no `s3` object", hint=_HINT)
    bucket, obj = s3.get("bucket"), s3.get("object")
    bucket_name = bucket.get("name") if isinstance(bucket, dict) else None
    key = obj.get("key") if isinstance(obj, dict) else None
    if not isinstance(bucket_name, str) or not bucket_name:
        raise MalformedEvent(f"{where} has no s3.bucket.name", hint=_HINT)
    if not isinstance(key, str) or not key:
        raise MalformedEvent(f"{where} has no s3.object.key", hint=_HINT)
    sequencer = obj.get("sequencer") if isinstance(obj, dict) else None
    fields = {"eventName": name, "s3.bucket.name": bucket_name, "s3.object.key": key}
    if isinstance(sequencer, str):
        fields["s3.object.sequencer"] = sequencer
    decoded = unquote_plus(key)
    fields["s3.object.key (decoded)"] = decoded
    for field, text in fields.items():
        _storable(text, f"{where}'s {field}")
    return S3Record(
        event_name=name.removeprefix("s3:"),
        bucket=bucket_name,
        key=decoded,
        sequencer=sequencer if isinstance(sequencer, str) and sequencer else None,
        raw=raw,
    )


def _storable(text: str, what: str) -> None:
    """`MalformedEvent` if `text` holds a lone surrogate (a JSON escape such as ``\\ud800``)
    or a NUL (raw, or ``%00`` in an encoded key): never in a real name or key, and no UTF-8
    store or log can take the one, nor a PostgreSQL text column the other, so a record
    holding one would fail at its submit (and run again each time the queue gives the
    message back). Before, a NUL reached the queue's INSERT: on PostgreSQL, a 503 for the
    whole pushed notification, sent again by the store for ever."""
    if "\x00" in text:
        raise MalformedEvent(f"{what} holds a NUL character", hint=_HINT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedEvent(
            f"{what} is not valid Unicode (a lone surrogate)", hint=_HINT
        ) from None
