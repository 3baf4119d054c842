"""The SQS source against a real S3 + SQS API (moto's server): bucket notifications in,
an envelope per matching record, messages deleted only once submitted."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from donjon.audit import AuditEvent
from donjon.errors import Error
from donjon.manifest.event_triggers import S3Spec
from donjon.triggers.envelope import Envelope
from donjon.triggers.source_errors import SourceSettingsError
from donjon.triggers.sqs_source import MAX_HIDDEN_S, SqsPoller, hidden_for, parse_settings
from harness import free_port
from moto_support import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer, moto_server

#: The loopback servers these tests stand up are internal addresses: opened to the sources
#: as an admin opens an internal network (triggers/source_address.py).
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)

__all__ = ["moto_server"]  # the fixture, used by name below


class Sink:
    """The poller's vault (one secret), submit and audit log."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = json.dumps(settings)
        self.envelopes: list[Envelope] = []
        self.records: list[AuditEvent] = []
        self.refuse = False
        #: Subjects (object keys) whose envelopes the node's check refuses.
        self.refused_keys: set[str] = set()
        self.checked: list[str] = []

    async def check(self, envelope: Envelope) -> None:
        self.checked.append(envelope.subject or "")
        if envelope.subject in self.refused_keys:
            raise Error("input does not match the function's schema")

    async def open_secret(self, name: str) -> str:
        assert name == "photo-queue"
        return self.settings

    async def submit(self, envelope: Envelope) -> str:
        if self.refuse:
            raise Error("the node is shedding load")
        self.envelopes.append(envelope)
        return f"id-{len(self.envelopes)}"

    async def record(self, event: AuditEvent) -> None:
        self.records.append(event)


def _queue(moto: MotoServer, bucket: str = "photos", visibility: int = 30) -> str:
    """A queue that `bucket`'s object events go to (configured through boto3); its URL."""
    sqs, s3 = moto.client("sqs"), moto.client("s3")
    url: str = sqs.create_queue(
        QueueName="events", Attributes={"VisibilityTimeout": str(visibility)}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    return url


def _settings(moto: MotoServer, url: str) -> dict[str, Any]:
    return {
        "queue_url": url,
        "region": REGION,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        "endpoint_url": moto.url,
    }


def _waiting(moto: MotoServer, url: str) -> int:
    """Messages on the queue, visible or in flight."""
    attrs = moto.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def _kept(moto: MotoServer, url: str) -> int:
    """Messages on a queue whose poller has stopped, once none is in flight (each visible
    again after its visibility timeout: bounded, 20 s). Not `_waiting`: its two counts
    are read one after the other, and a message whose timeout ends between them counts
    in both (2 for one message, seen in CI), or, read in the other order, in neither (0,
    seen in CI too). So the visible count is read on its own, once none is in flight:
    with the poller stopped, nothing turns invisible again."""
    sqs = moto.client("sqs")
    deadline = time.monotonic() + 20
    while True:
        attrs = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        if int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0:
            visible = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            count = int(visible["ApproximateNumberOfMessages"])
            # Counted in neither (seen under load): a hide (ChangeMessageVisibility) the
            # stopped poller's thread was still sending landed between the two reads. Read
            # again until the deadline: a message really gone reads 0 to the end.
            if count or time.monotonic() > deadline:
                return count
        elif time.monotonic() > deadline:
            raise AssertionError(f"messages still in flight after 20 s: {attrs}")
        time.sleep(0.2)


async def _until(check: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _run(sink: Sink, spec: S3Spec, body: Callable[[SqsPoller], Awaitable[None]]) -> None:
    async def go() -> None:
        poller = SqsPoller(
            "resize",
            spec,
            sink.open_secret,
            sink.submit,
            sink.record,
            sink.check,
            allow_networks=LOOPBACK,
        )
        task = asyncio.create_task(poller.run())
        try:
            await body(poller)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(go())


SPEC = S3Spec(source="sqs", secret="photo-queue", prefix="in/", suffix=".jpg")  # noqa: S106 - a vault name


@pytest.mark.slow
def test_matching_records_are_submitted_and_their_messages_deleted(
    moto_server: MotoServer,
) -> None:
    """Put and delete objects: each record under in/ ending .jpg is one envelope (created,
    then removed), the others none; every message (S3's test event too) is deleted."""
    url = _queue(moto_server)
    s3 = moto_server.client("s3")
    s3.put_object(Bucket="photos", Key="in/cat 1.jpg", Body=b"meow")
    s3.put_object(Bucket="photos", Key="in/notes.txt", Body=b"no")
    s3.put_object(Bucket="photos", Key="out/dog.jpg", Body=b"no")
    s3.delete_object(Bucket="photos", Key="in/cat 1.jpg")
    sink = Sink(_settings(moto_server, url))

    async def body(poller: SqsPoller) -> None:
        await _until(lambda: len(sink.envelopes) == 2, "two envelopes")
        await _until(lambda: _waiting(moto_server, url) == 0, "an empty queue")

    _run(sink, SPEC, body)
    created, removed = sink.envelopes
    assert (created.type, created.subject) == ("com.amazonaws.s3.ObjectCreated:Put", "in/cat 1.jpg")
    assert removed.type == "com.amazonaws.s3.ObjectRemoved:Delete"
    assert created.source == "s3://photos"
    (record,) = json.loads(created.event)["Records"]
    assert record["s3"]["bucket"]["name"] == "photos"
    assert sink.records == []


@pytest.mark.slow
def test_notifications_through_sns_are_opened(moto_server: MotoServer) -> None:
    """S3 -> SNS topic -> SQS queue (configured through boto3): the SNS envelope around each
    notification is opened, and its record submitted like a direct one."""
    sns, sqs, s3 = (moto_server.client(n) for n in ("sns", "sqs", "s3"))
    topic = sns.create_topic(Name="photo-topic")["TopicArn"]
    url = sqs.create_queue(QueueName="from-sns")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    s3.create_bucket(Bucket="photos")
    s3.put_bucket_notification_configuration(
        Bucket="photos",
        NotificationConfiguration={
            "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    s3.put_object(Bucket="photos", Key="in/via-sns.jpg", Body=b"x")
    sink = Sink(_settings(moto_server, url))

    async def body(poller: SqsPoller) -> None:
        await _until(lambda: len(sink.envelopes) == 1, "the envelope")
        await _until(lambda: _waiting(moto_server, url) == 0, "an empty queue")

    _run(sink, SPEC, body)
    assert sink.envelopes[0].subject == "in/via-sns.jpg"
    assert sink.records == []


@pytest.mark.slow
def test_a_message_not_taken_stays_on_the_queue_and_comes_back(moto_server: MotoServer) -> None:
    """While submit refuses, the message is not deleted; once it accepts, the redelivered
    message is submitted and deleted: nothing accepted by the queue is lost."""
    url = _queue(moto_server, visibility=1)
    moto_server.client("s3").put_object(Bucket="photos", Key="in/a.jpg", Body=b"x")
    sink = Sink(_settings(moto_server, url))
    sink.refuse = True

    async def body(poller: SqsPoller) -> None:
        await asyncio.sleep(3)  # received at least once, refused, left on the queue
        assert _waiting(moto_server, url) >= 1
        sink.refuse = False
        await _until(lambda: len(sink.envelopes) == 1, "the envelope once accepted")
        await _until(lambda: _waiting(moto_server, url) == 0, "an empty queue")

    _run(sink, SPEC, body)
    assert sink.envelopes[0].subject == "in/a.jpg"


def _record(key: str) -> dict[str, Any]:
    return {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "photos"}, "object": {"key": key, "sequencer": "0A"}},
    }


@pytest.mark.slow
def test_a_message_with_one_refused_record_submits_none_of_its_records(
    moto_server: MotoServer,
) -> None:
    """A message of two records whose second the node refuses (its schema, its body
    limit): neither is submitted, at any receive, and the message stays on the queue for
    its redrive policy (the first record does not run again at each redelivery)."""
    url = _queue(moto_server, visibility=1)
    body_text = json.dumps({"Records": [_record("in/good.jpg"), _record("in/bad.jpg")]})
    moto_server.client("sqs").send_message(QueueUrl=url, MessageBody=body_text)
    sink = Sink(_settings(moto_server, url))
    sink.refused_keys = {"in/bad.jpg"}

    async def body(poller: SqsPoller) -> None:
        await _until(lambda: sink.checked.count("in/bad.jpg") >= 2, "a second receive")

    _run(sink, SPEC, body)
    assert sink.envelopes == []
    assert _kept(moto_server, url) == 1


@pytest.mark.slow
def test_a_malformed_message_is_audited_once_and_left_to_the_redrive_policy(
    moto_server: MotoServer,
) -> None:
    """A message that is not an S3 notification: one trigger.event.malformed record however
    often it is received, nothing submitted, the message kept."""
    url = _queue(moto_server, visibility=1)
    moto_server.client("sqs").send_message(QueueUrl=url, MessageBody="{not json")
    sink = Sink(_settings(moto_server, url))

    async def body(poller: SqsPoller) -> None:
        await _until(lambda: len(sink.records) == 1, "the malformed record")
        await asyncio.sleep(3)  # received again after its 1 s visibility timeout

    _run(sink, SPEC, body)
    (record,) = sink.records
    assert (record.action, record.target, record.outcome) == (
        "trigger.event.malformed",
        "resize",
        "refused",
    )
    assert "not JSON" in record.detail["reason"]
    assert sink.envelopes == []
    assert _kept(moto_server, url) == 1


@pytest.mark.slow
def test_a_flood_of_malformed_messages_does_not_flood_the_audit_log(
    moto_server: MotoServer,
) -> None:
    """Whoever writes to the queue (a tenant, to its own queue) sends 40 distinct junk
    messages: each was audited, a durable record apiece, and past the 1,000 remembered
    they were audited again at every redelivery, without end. Now one record a minute per
    trigger, counting the others (`more`), and every message still kept."""
    url = _queue(moto_server, visibility=10)
    sqs = moto_server.client("sqs")
    for i in range(40):
        sqs.send_message(QueueUrl=url, MessageBody=f"junk {i}")
    sink = Sink(_settings(moto_server, url))

    def in_flight() -> int:
        attrs = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessagesNotVisible"])

    async def body(poller: SqsPoller) -> None:
        await _until(lambda: in_flight() == 40, "every message received")
        await _until(lambda: poller.malformed_seen >= 40, "every message read")

    _run(sink, SPEC, body)
    actions = [r.action for r in sink.records]
    assert actions == ["trigger.event.malformed"]
    assert sink.envelopes == []
    assert _kept(moto_server, url) == 40


@pytest.mark.slow
def test_an_unreachable_queue_is_one_outage_then_recovers(moto_server: MotoServer) -> None:
    """An endpoint nothing answers on: one outage record (the key kept out of it); settings
    rotated to the real queue: a recovery record, and events flow."""
    url = _queue(moto_server)
    moto_server.client("s3").put_object(Bucket="photos", Key="in/b.jpg", Body=b"x")
    good = _settings(moto_server, url)
    sink = Sink({**good, "endpoint_url": f"http://127.0.0.1:{free_port()}"})

    async def body(poller: SqsPoller) -> None:
        await _until(lambda: poller.health.failures >= 2, "two failed attempts")
        sink.settings = json.dumps(good)  # `donjon secret rotate`
        await _until(lambda: len(sink.envelopes) == 1, "the envelope after recovery", 90)

    _run(sink, SPEC, body)
    assert [r.action for r in sink.records] == [
        "trigger.source.unavailable",
        "trigger.source.available",
    ]
    assert "EndpointConnectionError" in sink.records[0].detail["reason"]
    assert SECRET_ACCESS_KEY not in json.dumps([r.detail for r in sink.records])


def test_settings_errors_name_the_field_never_the_value() -> None:
    """A secret that is not JSON, or lacks a field, or has a bad one: SourceSettingsError
    naming the fields, without the secret's text."""
    with pytest.raises(SourceSettingsError, match="is not JSON"):
        parse_settings("q", "s3cr3t-not-json")
    with pytest.raises(SourceSettingsError) as caught:
        parse_settings("q", json.dumps({"queue_url": "ftp://x", "secret_access_key": "TOPSECRET"}))
    text = caught.value.message
    assert "queue_url" in text and "region" in text and "access_key_id" in text
    assert "TOPSECRET" not in text and "ftp://x" not in text
    ok = parse_settings("q", json.dumps({**_settings_like(), "endpoint_url": "http://h:1"}))
    assert ok.endpoint_url == "http://h:1"


def _settings_like() -> dict[str, str]:
    return {
        "queue_url": "https://sqs.eu-west-1.amazonaws.com/1/q",
        "region": "eu-west-1",
        "access_key_id": "AKID",
        "secret_access_key": "k",
    }


def test_a_message_not_taken_is_hidden_longer_at_each_receive() -> None:
    """The hiding of a message the poller did not take: the queue's own visibility timeout
    (at least a second) at its first receive, doubled at each next, capped at 15 minutes
    unless the queue's own is longer."""
    assert [hidden_for(n, 0) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert [hidden_for(n, 30) for n in (1, 2, 5, 6)] == [30, 60, 480, 900]
    assert hidden_for(10**9, 1) == MAX_HIDDEN_S
    assert hidden_for(3, 43200) == hidden_for(1, 99999) == 43200  # SQS's most
