"""Storage events from an SQS queue: `s3: {source: sqs, secret: NAME}`.

The trigger's secret (in the vault, opened by the node, never given to the
function) holds the queue's settings as JSON: ``queue_url``, ``region``,
``access_key_id``, ``secret_access_key`` and, optionally, ``endpoint_url``.
One poller per trigger long-polls the queue with botocore's SQS client in a
thread of its own, reads each message's body (an S3 notification put on the
queue by S3, or wrapped by SNS), submits each record the trigger takes, and
deletes the message only once every record of it was submitted.

What that promises: at least once. A message is deleted after its records were
accepted, so a node that dies (or a delete that fails) between the two gets the
message again after the queue's visibility timeout, and its records are
submitted again; handlers tell by the event's delivery id (bucket/key/sequencer).
A malformed message is never deleted: it is logged and audited (once per message
on a node, and at most once a minute per trigger, the next record counting the rest)
and left to the queue's redrive policy, which moves it to the queue's
own dead-letter queue. A message not taken (malformed, refused, or its function's
queue full) is hidden for the queue's visibility timeout (at least a second), doubled at
each receive of it, up to 15 minutes (`hidden_for`): before, on a queue whose timeout
is 0, one such message came back at once, for ever, spinning the poller and writing a
warning per receive (120 a second). An unreachable queue or refused credentials are one
outage (source_health.py): retried with a capped exponential backoff, alerted
once, and its end recorded.

A message's body is parsed and its records' events made by `make` (`pushed_envelopes`,
which the node runs in its large events' child for a body past 64 KiB), and each event
checked by the node's `check` (its limits.body and input_schema: past 64 KiB, in that
child too): SQS sends at most 1 MiB a message, but `endpoint_url` may name any
SQS-compatible endpoint, whose answers are read up to 16 MiB, and a 5.9 MB message held
the node's event loop 0.5-0.8 s, every other tenant's calls waiting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from donjon.audit import AuditEvent
from donjon.egress.addresses import IPNetwork
from donjon.errors import Error
from donjon.manifest.event_triggers import S3Spec
from donjon.triggers.envelope import Check, Envelope, Submit, SubmitAll
from donjon.triggers.s3_events import pushed_envelopes
from donjon.triggers.source_address import check_url
from donjon.triggers.source_errors import MalformedEvent, SourceError, SourceSettingsError
from donjon.triggers.source_health import Backoff, Record, SourceHealth
from donjon.triggers.sqs_responses import bound_responses
from donjon.vault.redact import Redactor

__all__ = [
    "MALFORMED_WINDOW_S",
    "WAIT_S",
    "MakeEnvelopes",
    "SqsPoller",
    "SqsSettings",
    "hidden_for",
    "parse_settings",
]

log = logging.getLogger("donjon.sources")

#: The long poll's wait (SQS's WaitTimeSeconds): a receive returns as soon as a message
#: is there, or after this long. A stopping node abandons the receive in flight.
WAIT_S = 10
#: Messages one receive takes at most (SQS's maximum).
BATCH = 10
#: Malformed messages remembered, so each is audited once per node, not at each receive.
_SEEN_MALFORMED = 1000
#: At most one `trigger.event.malformed` record per trigger in this many seconds.
MALFORMED_WINDOW_S = 60.0
#: The longest a message not taken is hidden (unless the queue's own timeout is longer).
MAX_HIDDEN_S = 900
_SQS_MAX_VISIBILITY_S = 43200

OpenSecret = Callable[[str], Awaitable[str]]
#: `pushed_envelopes(function, spec, body)`: a message body's envelopes for the trigger, or
#: its MalformedEvent's message and hint; the node's runs it off the loop for a large body.
MakeEnvelopes = Callable[[str, S3Spec, str], Awaitable[list[Envelope] | tuple[str, str]]]
T = TypeVar("T")


async def _made_here(function: str, spec: S3Spec, body: str) -> list[Envelope] | tuple[str, str]:
    """`pushed_envelopes` on the loop (a poller without a node's `make`: tests, tools)."""
    return pushed_envelopes(function, spec, body)


class SqsSettings(BaseModel):
    """The queue a trigger reads, as its vault secret holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue_url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    region: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    access_key_id: str = Field(min_length=1, max_length=256)
    secret_access_key: str = Field(min_length=1, max_length=1024)
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$", max_length=2048)


def parse_settings(name: str, text: str) -> SqsSettings:
    """The settings in secret `name`; `SourceSettingsError` naming the fields at fault
    (never their values: the secret's text stays out of every message)."""
    hint = (
        f"`donjon secret rotate {name}` with JSON: queue_url, region, access_key_id, "
        "secret_access_key and optionally endpoint_url"
    )
    try:
        document = json.loads(text)
    except ValueError:
        raise SourceSettingsError(f"secret {name} is not JSON", hint=hint) from None
    try:
        return SqsSettings.model_validate(document)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in e.errors(include_input=False, include_url=False)
        )
        raise SourceSettingsError(
            f"secret {name} does not hold SQS settings ({problems})", hint=hint
        ) from None


def hidden_for(receives: int, visibility: int) -> int:
    """Seconds a message not taken is hidden after its `receives`-th receive from a queue
    whose visibility timeout is `visibility`: that timeout (at least 1 s) at the first,
    doubled at each next, at most `MAX_HIDDEN_S` (or the queue's own, if longer, up to
    SQS's most, 12 hours: an endpoint that is not SQS may say anything)."""
    base = min(max(visibility, 1), _SQS_MAX_VISIBILITY_S)
    return min(base << min(max(receives, 1) - 1, 16), max(MAX_HIDDEN_S, base))


def _client(settings: SqsSettings) -> Any:
    """botocore's SQS client for `settings` (made in the poller's thread: it reads files),
    each response read within `MAX_RESPONSE` (sqs_responses.py)."""
    import botocore.config
    import botocore.session

    client = botocore.session.get_session().create_client(
        "sqs",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        config=botocore.config.Config(
            connect_timeout=5,
            read_timeout=WAIT_S + 20,
            retries={"mode": "standard", "max_attempts": 2},
        ),
    )
    return bound_responses(client)


class SqsPoller:
    """Reads one trigger's queue until cancelled."""

    def __init__(
        self,
        function: str,
        spec: S3Spec,
        open_secret: OpenSecret,
        submit: Submit,
        record: Record,
        check: Check | None = None,
        submit_all: SubmitAll | None = None,
        allow_networks: Sequence[IPNetwork] = (),
        make: MakeEnvelopes | None = None,
    ) -> None:
        if spec.source != "sqs" or spec.secret is None:
            raise SourceSettingsError(f"{function}: an s3 trigger read from SQS names its secret")
        self.function = function
        self.spec = spec
        self.secret: str = spec.secret
        self._open_secret = open_secret
        self._submit = submit
        self._check = check
        self._submit_all = submit_all
        self._record = record
        self._allow_networks = allow_networks
        self._make = make if make is not None else _made_here
        self.health = SourceHealth(record, function, "s3", f"sqs queue of secret {spec.secret}")
        self._malformed: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: Malformed messages read (each receive of one counts).
        self.malformed_seen = 0
        #: When the last malformed message was audited, and how many were not since.
        self._malformed_at: float | None = None
        self._malformed_more = 0
        self._redact = Redactor({})
        #: Whether a failure to hide a message was said (once per poller: then debug).
        self._hide_failed = False
        #: The queue's visibility timeout, read once per client (0: unknown).
        self._visibility: int | None = None

    async def run(self) -> None:
        backoff = Backoff()
        opened: str | None = None
        client: Any = None
        queue_url = ""
        endpoint: str | None = None
        while True:
            try:
                text = (await self._open_secret(self.secret)).strip()
                if text != opened:  # first, or rotated: a client for the new settings
                    settings = parse_settings(self.secret, text)
                    self._redact = Redactor(
                        {"secret_access_key": settings.secret_access_key, self.secret: text}
                    )
                    client = await self._call(_client, settings)
                    self._visibility = None
                    opened, queue_url = text, settings.queue_url
                    endpoint = settings.endpoint_url
                    self.health.source = f"sqs {queue_url}"
                if endpoint is not None:  # each time: a name may resolve elsewhere now
                    what = f"the endpoint_url in secret {self.secret}"
                    await check_url(endpoint, self._allow_networks, what)
                if self._visibility is None:
                    self._visibility = await self._queue_visibility(client, queue_url)
                reply = await self._call(
                    client.receive_message,
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=BATCH,
                    WaitTimeSeconds=WAIT_S,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except Exception as e:  # any failure is an outage: retried, never fatal
                await self.health.failed(self._reason(e))
                await asyncio.sleep(backoff.next())
                continue
            await self.health.succeeded()
            backoff.reset()
            # SQS returns at most BATCH; more is an endpoint that is not SQS, whose answer
            # must not set how many calls and log lines the node makes.
            for message in reply.get("Messages", [])[:BATCH]:
                try:
                    taken = await self._take(client, queue_url, message)
                except Exception:  # a defect: the message stays queued, the poller goes on
                    taken = False
                    log.exception(
                        "%s: a message of %s could not be taken", self.function, queue_url
                    )
                if not taken:
                    await self._hide(client, queue_url, message)

    async def _take(self, client: Any, queue_url: str, message: dict[str, Any]) -> bool:
        """Submit the message's records, then delete it; False if it was left (said why)."""
        message_id = str(message.get("MessageId", ""))
        try:
            # Parsed and made by `make` (in the node's child for a large body); a child
            # too busy now (Error) leaves the message for its next receive.
            made = await self._make(self.function, self.spec, str(message.get("Body", "")))
            if isinstance(made, tuple):  # not a notification: its MalformedEvent's words
                await self._report_malformed(message_id, MalformedEvent(made[0], hint=made[1]))
                return False
            taken = made
            # Every record first: one the node refuses leaves the whole message on the
            # queue, none of its records submitted (else those before it would run
            # again at each redelivery, until the redrive policy moves it).
            check = self._check
            if check is not None:
                for envelope in taken:
                    await check(envelope)
                    # A small event is checked inline: a thousand of them (a message may
                    # hold 1,000 records) must not hold the loop as one step.
                    await asyncio.sleep(0)
        except Error as e:
            log.warning(
                "%s: message %s of %s was not taken (it will be received again): %s",
                self.function,
                message_id,
                queue_url,
                e.summary(),  # never the refused value: the record's field, at most
            )
            return False
        try:
            # All or none: a function whose queue is full (limits.queued) takes none of
            # the message's records, and the message stays on the queue for redelivery.
            await self._submit_records(taken)
        except Error as e:  # left on the queue: it comes back after its visibility timeout
            log.warning(
                "%s: message %s of %s was not taken (it will be received again): %s",
                self.function,
                message_id,
                queue_url,
                e.summary(),  # never the refused value: the record's field, at most
            )
            return False
        try:
            await self._call(
                client.delete_message, QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except Exception as e:  # its records were submitted: received again, they run twice
            log.warning(
                "%s: message %s was submitted but not deleted (it will be received again): %s",
                self.function,
                message_id,
                self._reason(e),
            )
        return True

    async def _queue_visibility(self, client: Any, queue_url: str) -> int:
        """The queue's visibility timeout in seconds; 0 if it cannot be read."""
        try:
            reply = await self._call(
                client.get_queue_attributes,
                QueueUrl=queue_url,
                AttributeNames=["VisibilityTimeout"],
            )
            raw = str(reply.get("Attributes", {}).get("VisibilityTimeout", "0"))
        except Exception as e:  # no sqs:GetQueueAttributes: hidden from 1 s, doubling
            log.debug("%s: the queue's visibility timeout: %s", self.function, self._reason(e))
            return 0
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 6 else 0

    async def _hide(self, client: Any, queue_url: str, message: dict[str, Any]) -> None:
        """Hide a message not taken for `hidden_for` its receive count: the queue's own
        visibility timeout may be 0. A failure (credentials without
        sqs:ChangeMessageVisibility) is said once, then the queue's timeout rules."""
        attributes = message.get("Attributes") or {}
        raw = str(attributes.get("ApproximateReceiveCount", "1"))
        receives = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 1
        try:
            await self._call(
                client.change_message_visibility,
                QueueUrl=queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=hidden_for(receives, self._visibility or 0),
            )
        except Exception as e:
            level = logging.DEBUG if self._hide_failed else logging.WARNING
            self._hide_failed = True
            log.log(
                level,
                "%s: a message not taken could not be hidden (it comes back at the queue's "
                "visibility timeout; grant sqs:ChangeMessageVisibility): %s",
                self.function,
                self._reason(e),
            )

    async def _submit_records(self, taken: list[Envelope]) -> None:
        if self._submit_all is not None:
            await self._submit_all(taken)
            return
        for envelope in taken:  # a node without a batch submit: one at a time
            await self._submit(envelope)

    async def _report_malformed(self, message_id: str, error: SourceError) -> None:
        """Log and audit a malformed message: once per message on this node, and at most one
        record (and warning) per `MALFORMED_WINDOW_S` for the trigger, the next one counting
        those left out (`more`): whoever writes to the queue sets how many there are, and
        must not set how much the audit log and the node's log grow."""
        self.malformed_seen += 1
        if message_id in self._malformed:
            return
        self._malformed[message_id] = None
        if len(self._malformed) > _SEEN_MALFORMED:
            self._malformed.popitem(last=False)
        now = time.monotonic()
        if self._malformed_at is not None and now - self._malformed_at < MALFORMED_WINDOW_S:
            self._malformed_more += 1
            log.debug("%s: message %s is not an S3 notification", self.function, message_id)
            return
        more, self._malformed_more, self._malformed_at = self._malformed_more, 0, now
        log.warning(
            "%s: message %s of %s is not an S3 notification (left to the queue's redrive "
            "policy; %d more since the last one said): %s",
            self.function,
            message_id,
            self.health.source,
            more,
            error.message,
        )
        detail = {
            "trigger": "s3",
            "source": self.health.source,
            "message_id": message_id[:128],
            "reason": error.message[:300],
            "more": more,
        }
        try:
            await self._record(
                AuditEvent("system", "trigger.event.malformed", self.function, "refused", detail)
            )
        except Exception:
            log.exception(
                "%s: the record of a malformed message could not be written", self.function
            )

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn` in a daemon thread of its own: botocore blocks, and a long poll that a
        stopping node abandons must not hold the process's exit (a pool's threads would)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if done.cancelled():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)

        def work() -> None:
            try:
                result, error = fn(*args, **kwargs), None
            except Exception as e:
                result, error = None, e
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=work, name=f"sqs-{self.function}", daemon=True).start()
        return await done

    def _reason(self, error: BaseException) -> str:
        text = error.message if isinstance(error, Error) else f"{type(error).__name__}: {error}"
        return self._redact(text)
