"""Client connections: deadlines, head limits and caps, enforced while reading.

uvicorn's httptools protocol, with what it lacks against slow or greedy clients: a
deadline for each request head (from connecting, or from the first byte of a later
request on a kept-alive connection), a deadline for body progress and one for the
whole body however it trickles, limits on head size and header count checked as bytes
arrive (431, before the head is buffered whole), and caps on open connections per
client address and in all (counted in client_caps.py). Over a cap, the new connection
is closed at once; other clients' connections are never touched. A request asking for
a protocol upgrade is refused from its head (501), its connection closed.

A connection whose request was refused for the caller's own limits (429 with
Retry-After: a rate limit, a quota, a throttle) rests before its next request is
read: for half to all of `refusal_hold_s` (at most the Retry-After), each connection
its own share, so that a flood's connections refused together do not wake together.
A client flooding past its limits on kept-alive connections then costs the gateway
one refusal per connection and rest, not one per request it can send; reading is
paused, so its requests wait in its own socket buffers, at no cost to anyone else.
Trusted proxies (carrying other clients' requests on the same connections) are never held.
"""

from __future__ import annotations

import asyncio
import contextvars
import http
import ipaddress
import itertools
from collections.abc import Iterator
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from donjon.config import ConnectionSettings
from donjon.deadlines import Alarm, Deadlines, deadlines
from donjon.gateway.checked_head import CheckedCycle
from donjon.gateway.client_caps import ClientConnections, connection_cap
from donjon.gateway.early_shed import EarlyShed
from donjon.gateway.finished_cycle import finished_cycle
from donjon.gateway.head_rules import closing_head, error_response, host_fits, retry_after_s
from donjon.gateway.response_writer import ResponseWriter
from donjon.gateway.write_stall import WriteStallProtocol

__all__ = ["ClientConnections", "GatewayProtocol", "connection_cap", "protocol_for"]


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that breaks a limit."""


class GatewayProtocol(WriteStallProtocol):
    """HTTP/1.1 over httptools with deadlines (a stalled answer's too: write_stall.py),
    head limits and connection caps."""

    clients: ClassVar[ClientConnections] = ClientConnections(per_client=64, total=512)
    #: Sheds an invoke call from its head alone, before the app (early_shed.py).
    early_shed: ClassVar[EarlyShed | None] = None
    _serials: ClassVar[Iterator[int]] = itertools.count()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address: str | None = None  # set once admitted: counted in `clients`
        self._holds = False  # rests after a refusal (not a trusted proxy's connection)
        self._hold_s = 0.0  # the rest the response going out asks for
        # Its share of a full rest, 0.5 to 0.97 by its serial: the connections of one
        # flood, refused together, wake at 16 different times, not all at once.
        self._rest_share = 0.5 + (next(self._serials) % 16) / 32
        self._hold_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # between requests or inside a head
        self._head_bytes = 0  # raw bytes received since this head began
        self._head_size = 0  # bytes of request line and header fields parsed
        self._header_count = 0
        self._body_pending = False  # head complete, body not yet whole
        self._body_progress = False  # body bytes arrived since the body timer was armed
        self._refusal = 0  # the status a broken limit answers
        self._close_after = False  # the response going out ends the connection
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None  # the whole body's
        self._answered: RequestResponseCycle | None = None  # `_finished_cycle`'s, made once
        self._kept_alive = False  # what `_keeps` said last (an early shed's 503)
        self._timers: Deadlines | None = None  # the loop's shared timers, once needed
        # Idle since (the loop's clock): an answer completed and nothing read since; None
        # while a request is on its way. One alarm a connection (`_idle_alarm`) reads it.
        self._idle_at: float | None = None
        self._idle_alarm: Alarm | None = None
        self._refused_after = 0  # a pipelined head's refusal, due once the answers before it
        # The context the connection's first request starts from: a pipelined request's
        # too (`_complete`), not its predecessor's task's (its request id and the rest).
        self._context = contextvars.copy_context()

    # Connections

    # uvicorn narrows asyncio.Protocol's BaseTransport to Transport; so does this override.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else "-"
        if not self.clients.admit(address):
            transport.abort()
            return
        self._address = address
        self._holds = self.limits.refusal_hold_s > 0 and not self.clients.is_proxy(address)
        self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self._idle_at = None
        if self._idle_alarm is not None:
            self._idle_alarm.cancel()
            self._idle_alarm = None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if self._address is not None:
            self.clients.release(self._address)
            self._address = None
        super().connection_lost(exc)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._body_deadline):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._body_deadline = None

    def _refuse(self, status: int) -> None:
        """Answer `status` and close: the request broke a limit or a deadline."""
        self._cancel_timers()
        in_head, self._in_head = self._in_head, False
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            queued = bool(self.pipeline) and self.pipeline[0][0] is cycle
            if in_head or queued:  # pipelined behind a request being served: its answer first
                if queued:  # its body broke before it ever ran: it never will
                    self.pipeline.popleft()
                self._refused_after = status  # written in `_complete`; nothing more is read
                self.flow.pause_reading()
                return
            if cycle.response_started:  # too late for a status: just close
                self.transport.close()
                return
            cycle.disconnected = True  # the app sees http.disconnect and writes nothing
            cycle.message_event.set()
        elif self._body_pending:
            # The body of a request already answered (a refusal made from its head, an
            # early shed) stalled or broke: that request has had its one answer, and a
            # second (the 408) would be read as the next request's. Just close.
            self.transport.close()
            return
        self.transport.write(error_response(status, self.server_state.default_headers))
        self.transport.close()

    # Reading

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing() or self._refused_after:
            return
        self._idle_at = None  # not idle: the alarm, when it fires, leaves it open
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # see on_headers_complete
            self._refuse(self._refusal or 400)
            return
        # Timers are armed only for what is left unfinished after this chunk.
        if self._in_head:
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(431)  # a head still unfinished past the limit (one long field)
            elif self._head_bytes and self._head_timer is None:  # a kept-alive connection's
                self._head_timer = self.loop.call_later(
                    self.limits.head_timeout_s,  # next head
                    self._head_expired,
                )
        elif self._body_pending and self._body_timer is None:
            self._body_progress = False
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_stalled)
            if self._body_deadline is None:  # once per body: progress does not extend it
                self._body_deadline = self.loop.call_later(
                    self.limits.body_deadline_s, self._body_overdue
                )

    def on_message_begin(self) -> None:
        # A request has begun: the connection is not idle. uvicorn cancels its keep-alive
        # timer only in `data_received`, but an early shed (`_shed_early`) completes its
        # response, which arms that timer, while the same chunk is still being parsed: a
        # request pipelined behind the shed in that chunk would be served with the timer
        # running, and its connection closed under it when the timer fired.
        self._idle_at = None
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self.limits.max_head_bytes:
            self._refusal = http.HTTPStatus.REQUEST_URI_TOO_LONG
            raise _Refused
        self.url += url  # uvicorn's `on_url`

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4
        if (
            self._header_count > self.limits.max_headers
            or self._head_size > self.limits.max_head_bytes
        ):
            self._refusal = http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
            raise _Refused
        if self._in_head:  # uvicorn's `on_header`, inline (tests/gateway/test_parser_callbacks.py)
            name = name.lower()
            if name == b"expect" and value.lower() == b"100-continue":
                self.expect_100_continue = True
            self.headers.append((name, value))
        # Else a trailer field of a chunked body, bounded as a head's fields are and
        # dropped: uvicorn appended it to the request's headers, which the function's
        # event is made from after the body is read: fields no check of the head saw.

    def on_headers_complete(self) -> None:
        if self.parser.should_upgrade():
            # An upgrade or CONNECT: httptools reads none of its body, drops the rest of
            # this read and takes the next as a new request. None is served: refused.
            self._refusal = http.HTTPStatus.NOT_IMPLEMENTED
            raise _Refused
        if not host_fits(self.headers, self.url, self.parser):
            self._refusal = http.HTTPStatus.BAD_REQUEST
            raise _Refused
        self._in_head = False
        self._head_bytes = self._head_size = self._header_count = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._body_pending = True
        if self.early_shed is not None and self._shed_early(self.early_shed):
            return
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.__class__ = CheckedCycle  # a checked head written as is (checked_head.py)
            # Its task runs from the next iteration on: nothing was written yet.
            cycle.transport = ResponseWriter(  # type: ignore[assignment]  # duck-typed transport
                self.transport,
                self.loop,
                self._refused if self._holds else None,
                self._unread,
                self.expect_100_continue,
            )

    def _shed_early(self, early_shed: EarlyShed) -> bool:
        """Answer 503 now if the call would be shed at admission and its API key may
        invoke the function (early_shed.py): no ASGI cycle is made; the body that
        follows is read and dropped."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return False  # a pipelined request behind one being served: queued as usual
        done, answer = early_shed.answer(
            self.parser.get_method(), self.url, self.headers, self._address or "-", self._keeps
        )
        if answer is None:
            if done is not None:  # counted until its task's first step (`admit` is there)
                self.loop.call_soon(done)
            return False
        self.cycle = self._finished_cycle()
        self.transport.write(answer)
        if not self._kept_alive:  # (what `_keeps` said for the 503: it asked once)
            self.transport.close()
            return True
        self.on_response_complete()
        return True

    def _keeps(self) -> bool:
        """Whether the connection stays open after an early shed's 503 (asked by the early
        shed for a 503 only: a call let through pays nothing), kept for `_shed_early`.

        A client waiting for 100 Continue may send its body or not: the connection
        closes after the 503 rather than guess where the next request starts. HTTP/1.0
        closes after its answer whatever it asked, as uvicorn's own cycle has it."""
        keep_alive = self._kept_alive = (
            self.parser.get_http_version() == "1.1"
            and self.parser.should_keep_alive()
            and not self.expect_100_continue
        )
        return keep_alive

    def _finished_cycle(self) -> RequestResponseCycle:
        """A cycle already answered: uvicorn's body callbacks drop what they get.

        One per connection, made at its first early shed and the current cycle at each
        one after: a finished cycle is only read (`response_complete`) and its event
        set, by uvicorn and here, never written to again, and under an overload most
        requests a connection carries are shed (finished_cycle.py)."""
        if self._answered is None:
            on_response = self.on_response_complete
            self._answered = finished_cycle(
                self.transport, self.flow, self.logger, self.access_logger, on_response
            )
        return self._answered

    def on_body(self, body: bytes) -> None:
        self._body_progress = True
        # uvicorn's `on_body`, inline (tests/gateway/test_parser_callbacks.py).
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        self._in_head = True  # what comes next is the next request's head
        self._head_size = self._header_count = 0  # a chunked body's trailers counted
        self._body_pending = False
        for timer in (self._body_timer, self._body_deadline):
            if timer is not None:
                timer.cancel()
        self._body_timer = self._body_deadline = None
        cycle = self.cycle  # then uvicorn's `on_message_complete`, inline
        if not (
            (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete
        ):
            cycle.more_body = False
            cycle.message_event.set()
        # A request answered before its body had all come (a refusal from its head, an
        # early shed) completed its response while the body was still arriving; the last
        # of it cancelled the idle timer that response armed (`data_received`), and
        # nothing armed another: the connection sat open with no timer at all.
        if cycle is not None and cycle.response_complete and self._hold_timer is None:
            self._arm_keepalive()

    # Resting after a refusal

    def _refused(self, head: bytes) -> None:
        """A 429 is going out: with a Retry-After, the connection rests after it."""
        retry_after = retry_after_s(head)
        if retry_after is not None:
            self._hold_s = min(self.limits.refusal_hold_s, retry_after) * self._rest_share

    def _unread(self, head: bytes) -> bytes:
        """A 413, or an answer instead of the 100 Continue its client waits for, is going
        out: if the body is still to come, it is the last response of this connection, and
        its head says so. Reading on would take in what the limit refused (answered a
        second time at the body deadline), or, from a client that sends no body after a
        final answer (RFC 9110 10.1.1), its next request as this one's body."""
        if not self._body_pending or not head.endswith(b"\r\n\r\n"):
            return head
        self._close_after = True
        return closing_head(head)

    def on_response_complete(self) -> None:
        if self._close_after:
            self._close_after = False
            self._cancel_timers()
            self.transport.close()
            return
        hold, self._hold_s = self._hold_s, 0.0
        if hold <= 0 or self.transport.is_closing():
            self._complete()
            return
        # Not read until the rest is over: a pipelined request waits too, and the
        # keep-alive timer starts after it (uvicorn's own completion, deferred).
        self.flow.pause_reading()
        self._hold_timer = self.loop.call_later(hold, self._rested)

    def _complete(self) -> None:
        """uvicorn's own `on_response_complete` (0.54, pinned in pyproject.toml), its
        keep-alive timer an idle stamp read by one alarm on the loop's shared timers
        (`_arm_keepalive`, deadlines.py) rather than a timer of the loop's armed after
        every answer and cancelled by the next request's first bytes (about 2.3 µs each
        under uvloop). It may close an idle connection up to a tick late."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_at = None
        if self._refused_after and not self.pipeline:  # the answers before it are out
            self.transport.write(
                error_response(self._refused_after, self.server_state.default_headers)
            )
            self.transport.close()
            return
        if self.flow.read_paused:  # paused for a pipelined request: resumed
            self.flow.resume_reading()
        if self.pipeline:  # that request is served now
            cycle, app = self.pipeline.pop()
            # Its task starts from a copy of the connection's context: this runs in the
            # task of the request answered before it (or in the rest timer it armed).
            self._context.run(self._start_asgi_task, cycle, app)
            return
        self._arm_keepalive()

    def _arm_keepalive(self) -> None:
        """Close the connection if it stays idle for the keep-alive timeout (unless a
        request is waiting to be served, or it is idle already: from then on).

        Idle is a time stamp, not a timer: a request's first bytes clear it and its
        answer sets it again, while the connection's one alarm, armed when none runs,
        reads it when it fires (`_idle_check`). uvicorn's timer was armed after every
        answer and cancelled by the next request; this one is armed about once a
        timeout, whatever the requests between."""
        if self.pipeline or self._idle_at is not None:
            return
        if self.transport.is_closing():
            return
        self._idle_at = self.loop.time()
        if self._idle_alarm is None:
            self._idle_alarm = self._idle_timers().call_later(
                self.timeout_keep_alive, self._idle_check
            )

    def _idle_timers(self) -> Deadlines:
        timers = self._timers
        if timers is None:
            timers = self._timers = deadlines()
        return timers

    def _idle_check(self) -> None:
        """The alarm: close the connection if it has been idle for the whole timeout; if
        it is idle since later, wait for the rest; if it is not idle, nothing (its next
        answer arms another)."""
        self._idle_alarm = None
        idle_at = self._idle_at
        if idle_at is None or self.transport.is_closing():
            return
        left = idle_at + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self._idle_alarm = self._idle_timers().call_later(left, self._idle_check)
            return
        self._idle_at = None
        self.timeout_keep_alive_handler()

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn's, where it still calls it (`connection_lost`): not idle."""
        self._idle_at = None

    def _rested(self) -> None:
        self._hold_timer = None
        self._complete()

    # Deadlines

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes:
            self._refuse(http.HTTPStatus.REQUEST_TIMEOUT)
        else:  # connected (or kept alive) and sent nothing
            self._cancel_timers()
            self.transport.close()

    def _body_stalled(self) -> None:
        self._body_timer = None
        if not self._body_pending or self.transport.is_closing():
            return
        # Progress, or a pause that is ours (the app has not read what came): wait again.
        if self._body_progress or self.flow.read_paused:
            self._body_progress = False
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_stalled)
            return
        self._refuse(http.HTTPStatus.REQUEST_TIMEOUT)

    def _body_overdue(self) -> None:
        """The whole body is not in by its deadline: a client trickling a byte now and
        then makes progress enough for the stall timer, never enough for this one."""
        self._body_deadline = None
        if not self._body_pending or self.transport.is_closing():
            return
        if self.flow.read_paused:  # the gateway stopped reading, not the client: wait on
            self._body_deadline = self.loop.call_later(
                self.limits.body_timeout_s, self._body_overdue
            )
            return
        self._refuse(http.HTTPStatus.REQUEST_TIMEOUT)


def protocol_for(
    settings: ConnectionSettings,
    trusted_proxies: tuple[str, ...] = (),
    early_shed: EarlyShed | None = None,
) -> type[GatewayProtocol]:
    """A protocol class bound to these limits, to one fresh connection count and to the
    node's early shed (None: every request goes to the app)."""
    proxies = tuple(ipaddress.ip_network(net) for net in trusted_proxies)
    shed = early_shed

    class BoundGatewayProtocol(GatewayProtocol):
        limits = settings
        early_shed = shed
        clients = ClientConnections(
            per_client=settings.max_connections_per_client,
            total=connection_cap(settings),
            proxies=proxies,
        )

    return BoundGatewayProtocol
