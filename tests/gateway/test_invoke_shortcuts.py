"""The invoke route's shortcuts give what the general path gives: the node's own slots
given back without a coroutine (`Held.end_now`), a redactor of no secret not called,
a function's bytes result not rendered again, and the truth of the quota book and of
the throttles read from their dicts."""

from __future__ import annotations

import asyncio
import time

from donjon.gateway.invoke import _NO_SECRETS
from donjon.gateway.response_policy import function_json_response
from donjon.gateway.slots import Held
from donjon.monitor.throttles import Throttle, Throttles
from donjon.ratelimit import BucketKey, MemoryConcurrencyLimiter, MemoryRateLimiter
from donjon.ratelimit.quota_book import QuotaBook
from donjon.store.quotas import QuotaRecord

KEY = BucketKey(principal="key:a", scope="concurrency")


class Shared(MemoryConcurrencyLimiter):
    """A stand-in for a shared backend (not exactly the memory class: awaited)."""


def _held(*limiters: MemoryConcurrencyLimiter) -> Held:
    held = Held()
    for limiter in limiters:
        slot = limiter.try_acquire(KEY, 1, lease_s=60.0)
        assert slot is not None
        held.add(limiter, slot)
    return held


async def _in_use(*limiters: MemoryConcurrencyLimiter) -> list[int]:
    return [await limiter.held(KEY) for limiter in limiters]


def test_end_now_gives_back_the_node_slots_as_end_does() -> None:
    """Memory slots only: `end_now` frees them all at once, as `end` does, and an `end`
    after it has nothing left to give."""

    async def run() -> None:
        fast, general = (
            (MemoryConcurrencyLimiter(), MemoryConcurrencyLimiter()),
            (
                MemoryConcurrencyLimiter(),
                MemoryConcurrencyLimiter(),
            ),
        )
        by_end_now, by_end = _held(*fast), _held(*general)
        assert await _in_use(*fast) == await _in_use(*general) == [1, 1]
        assert by_end_now.end_now() is True
        await by_end.end()
        assert await _in_use(*fast) == await _in_use(*general) == [0, 0]
        await by_end_now.end()  # (idempotent: nothing held twice is given twice)
        assert await _in_use(*fast) == [0, 0]

    asyncio.run(run())


def test_end_now_stops_at_a_shared_slot_and_end_gives_the_rest() -> None:
    """A shared backend's slot between two memory ones: `end_now` frees the newest (the
    node's) and stops there (False); `end` then frees the shared one and the oldest,
    the same end state as `end` alone."""

    async def run() -> None:
        fast = (MemoryConcurrencyLimiter(), Shared(), MemoryConcurrencyLimiter())
        general = (MemoryConcurrencyLimiter(), Shared(), MemoryConcurrencyLimiter())
        by_end_now, by_end = _held(*fast), _held(*general)
        assert by_end_now.end_now() is False
        assert await _in_use(*fast) == [1, 1, 0]  # newest first, as `release` goes
        await by_end_now.end()
        await by_end.end()
        assert await _in_use(*fast) == await _in_use(*general) == [0, 0, 0]

    asyncio.run(run())


def test_end_now_keeps_the_slots_of_a_call_whose_processes_run_on() -> None:
    """Processes running on past the answer: `end_now`, as `end`, gives nothing back."""

    async def run() -> None:
        fast, general = (MemoryConcurrencyLimiter(),), (MemoryConcurrencyLimiter(),)
        by_end_now, by_end = _held(*fast), _held(*general)
        by_end_now.runs_on()
        by_end.runs_on()
        assert by_end_now.end_now() is True
        await by_end.end()
        assert await _in_use(*fast) == await _in_use(*general) == [1]

    asyncio.run(run())


def test_a_redactor_of_no_secret_returns_every_text_as_given() -> None:
    """What `_call` skips for a function granted no secret: the call would change nothing."""
    texts = ["", "x", "[3 earlier lines dropped]\nabc", "[secret:x]", "é\x00\n" * 50, "[" * 9]
    for text in texts:
        assert _NO_SECRETS(text) == text


def test_a_bytes_result_is_the_same_response_as_a_rendered_one() -> None:
    """A result of bytes is the body as given; a memoryview of it (rendered as before,
    through `Response.render`) gives the same body, headers and checked head."""
    body = b'{"hello": "x"}'
    shortcut = function_json_response(body, "0a1b").response
    rendered = function_json_response(memoryview(body), "0a1b").response  # type: ignore[arg-type]  # the general path
    assert shortcut.body == bytes(rendered.body) == body
    assert shortcut.raw_headers == rendered.raw_headers
    assert getattr(shortcut, "checked_head", None) == getattr(rendered, "checked_head", None)


def test_the_quota_books_truth_follows_its_quotas() -> None:
    """`in_force`'s truth is the book's, after every way the book changes."""

    async def run() -> None:
        book = QuotaBook()
        assert not book.in_force and not book
        record = QuotaRecord("key:a", 10, None, time.time(), "admin")
        await book.put(record)
        assert book.in_force and book
        await book.put(QuotaRecord("function:f", None, 1000, time.time(), "admin"))
        await book.remove("key:a")
        assert book.in_force and book
        await book.remove("function:f")
        assert not book.in_force and not book

    asyncio.run(run())


def test_the_throttles_truth_follows_the_throttles_set() -> None:
    """`in_force`'s truth is the throttles' own, after add, remove and expiry."""
    now = [1000.0]
    throttles = Throttles(MemoryRateLimiter(), lambda: now[0])
    assert not throttles.in_force and not throttles
    throttles.add(Throttle("principal", "key:a", 1, 60.0, now[0], now[0] + 10, "test", None))
    assert throttles.in_force and throttles
    throttles.remove("principal", "key:a")
    assert not throttles.in_force and not throttles
    throttles.add(Throttle("source", "10.0.0.1", 1, 60.0, now[0], now[0] + 10, "test", None))
    now[0] += 20  # past its end: dropped when the throttles in force are listed
    assert throttles.active() == []
    assert not throttles.in_force and not throttles


def test_a_json_results_length_field_is_its_sizes_digits() -> None:
    """The content-length (`b"%d" % size`) is what `str(size).encode()` gave, in the
    raw headers and in the checked head's lines, at every number of digits."""
    for size in (0, 1, 9, 10, 99, 100, 4095, 65536, 1_000_000):
        response = function_json_response(b"1" * size, "0a1b").response
        length = str(size).encode("latin-1")
        assert (b"content-length", length) in response.raw_headers
        lines, size_checked = response.checked_head  # type: ignore[attr-defined]  # typed Response; a _JSONResult
        assert b"\r\ncontent-length: " + length + b"\r\n" in lines
        assert size_checked == size
