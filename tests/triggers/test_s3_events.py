"""S3 event notifications: records parsed, filtered by an s3 trigger, one envelope each."""

from __future__ import annotations

import json
from typing import Any

import pytest

from donjon.manifest.event_triggers import S3Spec
from donjon.triggers.s3_events import MAX_RECORDS, envelopes, matches, parse_notification
from donjon.triggers.source_errors import MalformedEvent


def _record(key: str, event: str = "ObjectCreated:Put", bucket: str = "photos") -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key, "size": 3, "eTag": "abc", "sequencer": "0055AED6DCD90281E5"}
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventName": event,
        "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj},
    }


def _doc(*records: dict[str, Any]) -> bytes:
    return json.dumps({"Records": list(records)}).encode()


def _spec(**kw: Any) -> S3Spec:
    return S3Spec(source="sqs", secret="queue", **kw)  # noqa: S106 - a vault name


def test_a_record_becomes_one_envelope_as_lambda_gives_it() -> None:
    """The envelope's event is {"Records": [record]}, the record as it came; the attributes
    name the bucket, the event and the decoded key; the delivery id is bucket/key/sequencer."""
    raw = _record("in/a+b%2Bc.jpg")
    (env,) = envelopes("resize", _spec(), parse_notification(_doc(raw)))
    assert json.loads(env.event) == {"Records": [raw]}
    assert (env.function, env.trigger, env.source) == ("resize", "s3", "s3://photos")
    assert env.type == "com.amazonaws.s3.ObjectCreated:Put"
    assert env.subject == "in/a b+c.jpg"
    assert env.delivery_id == "photos/in/a b+c.jpg/0055AED6DCD90281E5"


def test_keys_are_decoded_before_the_prefix_and_suffix_are_matched() -> None:
    """A key sent as `in%2Fmy+photo.JPG` is `in/my photo.JPG`: it matches prefix in/ and
    suffix .JPG, and a prefix written encoded matches nothing."""
    (record,) = parse_notification(_doc(_record("in%2Fmy+photo.JPG")))
    assert matches(_spec(prefix="in/", suffix=".JPG"), record)
    assert not matches(_spec(prefix="in%2F"), record)
    assert not matches(_spec(suffix=".jpg"), record)


@pytest.mark.parametrize(
    ("events", "event_name", "taken"),
    [
        (("s3:ObjectCreated:*",), "ObjectCreated:Put", True),
        (("s3:ObjectCreated:*",), "ObjectCreated:CompleteMultipartUpload", True),
        (("s3:ObjectCreated:*",), "ObjectRemoved:Delete", False),
        (("s3:ObjectCreated:Put",), "ObjectCreated:Copy", False),
        (("s3:ObjectRemoved:Delete",), "ObjectRemoved:Delete", True),
        (("s3:ObjectRemoved:*",), "ObjectRemoved:DeleteMarkerCreated", True),
        (("s3:ObjectCreated:Put",), "s3:ObjectCreated:Put", True),  # MinIO's spelling
    ],
)
def test_events_filter(events: tuple[str, ...], event_name: str, taken: bool) -> None:
    """`s3:ObjectCreated:*` takes every ObjectCreated event; a named event only itself."""
    (record,) = parse_notification(_doc(_record("k", event_name)))
    assert matches(_spec(events=events), record) is taken


def test_bucket_filter() -> None:
    """With `bucket` set, records of another bucket are not taken."""
    records = parse_notification(_doc(_record("k", bucket="photos"), _record("k", bucket="other")))
    assert [e.source for e in envelopes("f", _spec(bucket="photos"), records)] == ["s3://photos"]


def test_only_matching_records_of_a_document_become_envelopes() -> None:
    """Of three records, the two under the prefix give two envelopes, in order."""
    doc = _doc(_record("in/1.png"), _record("out/2.png"), _record("in/3.png"))
    subjects = [e.subject for e in envelopes("f", _spec(prefix="in/"), parse_notification(doc))]
    assert subjects == ["in/1.png", "in/3.png"]


def test_the_test_event_s3_sends_first_holds_no_record() -> None:
    """S3's s3:TestEvent (sent when a notification is configured) is skipped, not an error."""
    doc = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "t", "Bucket": "photos"}
    assert parse_notification(json.dumps(doc)) == []


def test_an_sns_envelope_is_opened() -> None:
    """S3 -> SNS -> SQS: the notification is the SNS message's `Message` string."""
    inner = _doc(_record("a.txt")).decode()
    sns = {"Type": "Notification", "MessageId": "m1", "TopicArn": "arn:t", "Message": inner}
    (record,) = parse_notification(json.dumps(sns))
    assert (record.bucket, record.key) == ("photos", "a.txt")
    test_event = json.dumps({"Event": "s3:TestEvent", "Service": "Amazon S3"})
    assert parse_notification(json.dumps({**sns, "Message": test_event})) == []


def test_without_a_sequencer_the_delivery_id_is_stable() -> None:
    """A record without a sequencer (moto's, some stores') gets an id from its content:
    the same record twice, the same id; another record, another."""
    raw = _record("k")
    del raw["s3"]["object"]["sequencer"]
    (first,) = parse_notification(_doc(raw))
    (again,) = parse_notification(_doc(raw))
    (other,) = parse_notification(_doc({**raw, "eventTime": "later"}))
    assert first.delivery_id == again.delivery_id != other.delivery_id
    assert first.delivery_id.startswith("photos/k/")


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"Records": {}}', "no `Records` list"),
        (b"{}", "no `Records` list"),
        (b'{"Records": [1]}', "record 0 is not a JSON object"),
        (b'{"Records": [{"s3": {}}]}', "record 0 has no eventName"),
        (b'{"Records": [{"eventName": "ObjectCreated:Put"}]}', "no `s3` object"),
        (
            b'{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "k"}}}]}',
            "no s3.bucket.name",
        ),
        (
            b'{"Records": [{"eventName": "x", "s3": {"bucket": {"name": "b"}, "object": {}}}]}',
            "no s3.object.key",
        ),
        (b'{"Type": "Notification", "Message": 3}', "Message is not a string"),
        (b'{"Type": "Notification", "Message": "{"}', "Message is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        (
            b'{"Records": [{"eventName": "x", "s3": {"bucket": {"name": "b"}, '
            b'"object": {"key": "k\\ud800"}}}]}',
            "record 0's s3.object.key is not valid Unicode",
        ),
        (
            b'{"Records": [{"eventName": "x", "s3": {"bucket": {"name": "\\udfff"}, '
            b'"object": {"key": "k"}}}]}',
            "record 0's s3.bucket.name is not valid Unicode",
        ),
    ],
)
def test_malformed_documents_are_refused_with_what_is_wrong(body: bytes, said: str) -> None:
    """Each malformed document raises MalformedEvent naming its fault (nothing parsed)."""
    with pytest.raises(MalformedEvent) as caught:
        parse_notification(body)
    assert said in caught.value.message
    assert caught.value.hint


def test_a_record_past_the_limit_refuses_the_whole_document() -> None:
    """A document with more than MAX_RECORDS records is refused whole, not cut."""
    with pytest.raises(MalformedEvent, match="more than"):
        parse_notification(_doc(*[_record(f"k{i}") for i in range(MAX_RECORDS + 1)]))
