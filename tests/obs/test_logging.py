"""The server's log pipeline: JSON lines or a console view, the request id, and redaction."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from donjon.obs import (
    ObservabilityError,
    bind_request_id,
    bind_secrets,
    clear_log_context,
    configure_logging,
    unbind_secrets,
)
from donjon.vault.redact import Redactor


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """A configured pipeline writing into a buffer; the process's logging is restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(json=True, stream=stream, level="debug")
    try:
        yield stream
    finally:
        clear_log_context()
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Donjon's lines (asyncio's own debug lines left out)."""
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line]
    return [line for line in lines if line["logger"].startswith("donjon")]


def test_stdlib_lines_are_json_with_level_logger_and_time(out: io.StringIO) -> None:
    """A `logging` call becomes one JSON object: message, upper-case level, logger, UTC time."""
    logging.getLogger("donjon.test").warning("served %d calls", 3)
    (line,) = _lines(out)
    assert line["event"] == "served 3 calls"
    assert line["level"] == "WARNING"
    assert line["logger"] == "donjon.test"
    assert line["timestamp"].endswith("Z")


def test_structlog_lines_keep_their_fields(out: io.StringIO) -> None:
    """A structlog call keeps its key-value fields as JSON fields."""
    structlog.get_logger("donjon.test").info("deployed", function="resize", version=3)
    (line,) = _lines(out)
    assert (line["event"], line["function"], line["version"]) == ("deployed", "resize", 3)


def test_bound_request_id_is_on_every_line_of_its_context(out: io.StringIO) -> None:
    """Lines logged in a request's context carry its id; another task's lines carry theirs."""

    async def request(request_id: str) -> None:
        bind_request_id(request_id)
        await asyncio.sleep(0)
        logging.getLogger("donjon").info("handling")
        structlog.get_logger("donjon.sandbox").info("in the pool")

    async def both() -> None:
        await asyncio.gather(request("aaaa000000000001"), request("bbbb000000000002"))

    asyncio.run(both())
    logging.getLogger("donjon").info("outside")
    by_id: dict[str | None, int] = {}
    for line in _lines(out):
        by_id[line.get("request_id")] = by_id.get(line.get("request_id"), 0) + 1
    assert by_id == {"aaaa000000000001": 2, "bbbb000000000002": 2, None: 1}


def test_a_lines_own_request_id_wins_and_clearing_drops_the_bound_one(
    out: io.StringIO,
) -> None:
    """A line that names a request id of its own keeps it (as structlog's merge of bound
    values would); once the context is cleared its lines carry none."""

    async def served() -> None:
        bind_request_id("aaaa000000000001")
        structlog.get_logger("donjon.egress").info("relayed", request_id="cccc000000000003")
        logging.getLogger("donjon").info("bound")
        clear_log_context()
        logging.getLogger("donjon").info("cleared")

    asyncio.run(served())
    ids = {line["event"]: line.get("request_id") for line in _lines(out)}
    assert ids == {"relayed": "cccc000000000003", "bound": "aaaa000000000001", "cleared": None}


def test_console_rendering_on_a_terminal() -> None:
    """Without a choice, a terminal gets the console view and anything else gets JSON."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        tty = _Terminal()
        configure_logging(stream=tty)
        logging.getLogger("donjon").warning("on a terminal")
        text = tty.getvalue()
        assert "on a terminal" in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        pipe = io.StringIO()
        configure_logging(stream=pipe)
        logging.getLogger("donjon").warning("in a pipe")
        assert json.loads(pipe.getvalue())["event"] == "in a pipe"
        assert "in a pipe" not in tty.getvalue()  # configuring again replaced the handler
    finally:
        root.handlers[:] = handlers
        structlog.reset_defaults()


def test_unknown_level_is_refused() -> None:
    """A level that does not exist is a clear error, and nothing is installed."""
    before = list(logging.getLogger().handlers)
    with pytest.raises(ObservabilityError, match="unknown log level"):
        configure_logging(level="loud")
    assert logging.getLogger().handlers == before


API_KEY = "dj_k1a2b3c4d5e6f7a8_s3cr3tv4lu3s3cr3tv4lu3"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        (f"Authorization: Bearer {API_KEY}", API_KEY),
        ("cookie: session=0123456789abcdef; theme=dark", "0123456789abcdef"),
        (f"retrying with key {API_KEY} after a 401", API_KEY),
        ("upstream said: bearer abcdEFGH1234.xyz_-~+/=", "abcdEFGH1234"),
        (f"token {JWT} rejected", "c2lnbmF0dXJlLWJ5dGVz"),
        (f"loaded {PEM} from disk", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
        ("signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ],
)
def test_credentials_in_a_message_are_redacted(out: io.StringIO, message: str, secret: str) -> None:
    """Headers, API keys, bearer tokens, JWTs, PEM blocks and webhook secrets never reach a line."""
    logging.getLogger("donjon").warning("%s", message)
    text = out.getvalue()
    assert secret not in text
    assert "redacted" in json.loads(text)["event"]


def test_credential_fields_are_redacted_whatever_they_hold(out: io.StringIO) -> None:
    """A field or header named like a credential loses its value; its name and others stay."""
    structlog.get_logger("donjon").info(
        "request",
        headers={"Authorization": "Digest abc", "Cookie": "a=b", "Accept": "text/plain"},
        pairs=[("authorization", "Basic Zm9vOmJhcg==")],
        **{"password": "hunter2-hunter2"},
    )
    (line,) = _lines(out)
    assert line["headers"] == {
        "Authorization": "[redacted]",
        "Cookie": "[redacted]",
        "Accept": "text/plain",
    }
    assert line["pairs"] == [["authorization", "[redacted]"]]
    assert line["password"] == "[redacted]"


def test_secret_values_of_the_call_are_redacted_in_its_context(out: io.StringIO) -> None:
    """A granted secret's value, bound for the call, is taken out of the lines logged in it."""

    async def call() -> None:
        bind_secrets(Redactor({"stripe-key": "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}))
        logging.getLogger("donjon").error("upstream refused sk_live_4eC39HqLyjWDarjtT1zdp7dc")

    asyncio.run(call())
    logging.getLogger("donjon").error("after: sk_live_4eC39HqLyjWDarjtT1zdp7dc")
    first, second = _lines(out)
    assert first["event"] == "upstream refused [secret:stripe-key]"
    # Outside the call's context the value is not known (and not a credential's shape).
    assert second["event"] == "after: sk_live_4eC39HqLyjWDarjtT1zdp7dc"


def test_a_sub_call_adds_its_secrets_and_gives_them_back(out: io.StringIO) -> None:
    """While a call's sub-call runs both calls' values go; after it, the caller's only,
    and however many sub-calls ran, the context holds one redactor per level."""
    caller = bind_secrets(Redactor({"a": "value-of-secret-a"}))
    for _ in range(1000):  # a function calling another in a loop
        sub = bind_secrets(Redactor({"b": "value-of-secret-b"}))
        unbind_secrets(sub)
    sub = bind_secrets(Redactor({"b": "value-of-secret-b"}))
    logging.getLogger("donjon").info("in: value-of-secret-a value-of-secret-b")
    unbind_secrets(sub)
    logging.getLogger("donjon").info("out: value-of-secret-a value-of-secret-b")
    unbind_secrets(caller)
    logging.getLogger("donjon").info("done: value-of-secret-a")
    assert [line["event"] for line in _lines(out)] == [
        "in: [secret:a] [secret:b]",
        "out: [secret:a] value-of-secret-b",
        "done: value-of-secret-a",
    ]


def test_tracebacks_are_rendered_then_redacted(out: io.StringIO) -> None:
    """An exception's traceback is text in the line, cleaned like the message."""
    try:
        raise RuntimeError(f"bad key {API_KEY}")
    except RuntimeError:
        logging.getLogger("donjon").exception("call failed")
    (line,) = _lines(out)
    assert "Traceback" in line["exception"]
    assert "RuntimeError" in line["exception"]
    assert API_KEY not in out.getvalue()


def test_level_filters_lines(out: io.StringIO) -> None:
    """Below the configured level nothing is written."""
    configure_logging(json=True, stream=out, level="warning")
    logging.getLogger("donjon").info("quiet")
    structlog.get_logger("donjon").debug("quieter")
    logging.getLogger("donjon").warning("loud")
    assert [line["event"] for line in _lines(out)] == ["loud"]


def test_request_ids_minted_together_sort_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request id is 20 hex digits: a 64ths-of-a-second clock (wrapping), then 64 random
    bits, so ids of one instant share their first four digits and differ after them."""
    from donjon.obs import logging as obs_logging

    monkeypatch.setattr(obs_logging, "_clock", lambda: 1_700_000_000.5)
    ids = [obs_logging.mint_request_id() for _ in range(200)]
    head = f"{int(1_700_000_000.5 * 64) & 0xFFFF:04x}"
    assert all(re.fullmatch(r"[0-9a-f]{20}", i) and i.startswith(head) for i in ids)
    assert len({i[4:] for i in ids}) == 200  # the random part
    assert obs_logging.REQUEST_ID_LENGTH == 20
    monkeypatch.setattr(obs_logging, "_clock", lambda: 1_700_000_000.5 + 1024.0)
    assert obs_logging.mint_request_id()[:4] == head  # 65,536 ticks: wrapped round
    monkeypatch.setattr(obs_logging, "_clock", lambda: 1_700_000_000.5 + 1 / 64)
    later = obs_logging.mint_request_id()
    assert later[:4] == f"{(int(head, 16) + 1) & 0xFFFF:04x}"


def test_request_id_is_the_clock_and_random_bytes_in_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    """At every one of the clock's 65,536 ticks (and past its wrap), the id is what the
    bytes' `.hex()` gave: the clock's two bytes big-endian, then the eight random bytes."""
    from donjon.obs import logging as obs_logging

    random_part = bytes(range(0xF8, 0x100))
    monkeypatch.setattr("os.urandom", lambda n: random_part[:n])
    for tick in (*range(0x10000), 0x10000, 0x1FFFF, 3 * 0x10000 + 7):
        monkeypatch.setattr(obs_logging, "_clock", lambda tick=tick: (tick + 0.5) / 64)
        expected = ((tick & 0xFFFF).to_bytes(2, "big") + random_part).hex()
        assert obs_logging.mint_request_id() == expected
