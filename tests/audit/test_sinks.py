"""Checkpoint copies to a webhook and a syslog, and their settings."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from donjon.audit import AuditEvent, AuditLog, SigningKey, open_checkpoint
from donjon.audit import sinks as sinks_module
from donjon.audit.sinks import (
    SinkError,
    SyslogSink,
    WebhookSink,
    parse_syslog_target,
    parse_webhook_url,
)
from donjon.config import ConfigError, load_settings
from donjon.store import connect, create_schema


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = connect(f"sqlite:///{tmp_path / 'a.db'}")
    create_schema(e)
    return e


class Receiver:
    """A loopback HTTP server that fails its first `failures` POSTs, then keeps the bodies."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[dict[str, Any]] = []
        self.got = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.failures > 0:
                    outer.failures -= 1
                    self.send_response(503)
                else:
                    outer.bodies.append(json.loads(body))
                    outer.got.set()
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/checkpoints"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=2)
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_webhook_gets_each_checkpoint_after_retries(
    engine: Engine, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook receives the checkpoint JSON, retried past two failures."""
    monkeypatch.setattr(sinks_module, "FIRST_BACKOFF_S", 0.01)
    key = SigningKey.generate()
    sink = WebhookSink(receiver.url)
    log = AuditLog(engine, key, sinks=[sink])
    log.record_now(AuditEvent("a", "function.invoke", "f", "ok"))
    log.stop()  # closes the sink once what is queued is sent
    assert receiver.got.wait(60)
    body = receiver.bodies[-1]
    assert set(body) == {"size", "root", "ts", "note"}
    checkpoint = open_checkpoint(body["note"], key.verifier)
    assert checkpoint.size == body["size"] == 1 and checkpoint.root.hex() == body["root"]


def test_syslog_udp_gets_an_rfc5424_line(engine: Engine) -> None:
    """A UDP syslog receiver gets one RFC 5424 line per checkpoint, the JSON as MSG."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(60)
        port = server.getsockname()[1]
        key = SigningKey.generate()
        log = AuditLog(engine, key, sinks=[SyslogSink(f"udp://127.0.0.1:{port}")])
        log.record_now(AuditEvent("a", "function.invoke", "f", "ok"))
        line = server.recv(65536).decode()
        log.stop()
    assert line.startswith("<110>1 ")
    head, _, msg = line.partition(" - checkpoint - ")
    assert head.split(" ")[3] == "donjon"
    assert open_checkpoint(json.loads(msg)["note"], key.verifier).size == 1


def test_syslog_unix_socket(engine: Engine, tmp_path: Path) -> None:
    """A unix datagram socket receives the same line."""
    path = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(60)
        log = AuditLog(engine, SigningKey.generate(), sinks=[SyslogSink(f"unix:{path}")])
        log.record_now(AuditEvent("a", "function.invoke", "f", "ok"))
        assert b" - checkpoint - " in server.recv(65536)
        log.stop()


@pytest.mark.parametrize(
    "url",
    ["ftp://x/y", "http://example.com/x", "https://u:p@example.com/", "not a url"],
)
def test_bad_webhook_urls_are_refused(url: str) -> None:
    """Only https, or http to this host, without credentials."""
    with pytest.raises(SinkError):
        parse_webhook_url(url)


def test_good_sink_targets_parse() -> None:
    """https and loopback http webhooks, udp and unix syslogs are accepted."""
    assert parse_webhook_url("https://audit.example/cp") == "https://audit.example/cp"
    assert parse_webhook_url("http://127.0.0.1:9000/cp")
    assert parse_syslog_target("udp://10.0.0.5:514") == ("udp", ("10.0.0.5", 514))
    assert parse_syslog_target("unix:/dev/log") == ("unix", "/dev/log")


@pytest.mark.parametrize("target", ["udp://host", "tcp://h:514", "unix:relative", "udp://h:x"])
def test_bad_syslog_targets_are_refused(target: str) -> None:
    """A syslog target without a port, of another scheme or a relative path is refused."""
    with pytest.raises(SinkError):
        parse_syslog_target(target)


def test_settings_read_the_audit_variables(tmp_path: Path) -> None:
    """DONJON_AUDIT_CHECKPOINT_* land in settings.audit; bad values are refused by name."""
    settings = load_settings(
        {
            "DONJON_DATA_DIR": str(tmp_path),
            "DONJON_AUDIT_CHECKPOINT_RECORDS": "50",
            "DONJON_AUDIT_CHECKPOINT_S": "5",
            "DONJON_AUDIT_CHECKPOINT_WEBHOOK": "https://audit.example/cp",
            "DONJON_AUDIT_CHECKPOINT_SYSLOG": "udp://127.0.0.1:514",
        }
    )
    assert settings.audit.checkpoint_records == 50 and settings.audit.checkpoint_s == 5
    assert settings.audit.checkpoint_webhook == "https://audit.example/cp"
    assert settings.audit.checkpoint_syslog == "udp://127.0.0.1:514"
    assert settings.audit_checkpoints_path == tmp_path / "audit-checkpoints.jsonl"
    with pytest.raises(ConfigError) as e:
        load_settings(
            {
                "DONJON_DATA_DIR": str(tmp_path),
                "DONJON_AUDIT_CHECKPOINT_RECORDS": "0",
                "DONJON_AUDIT_CHECKPOINT_WEBHOOK": "http://example.com/",
                "DONJON_AUDIT_CHECKPOINT_SYSLOG": "udp://nowhere",
            }
        )
    text = e.value.message
    assert "AUDIT_CHECKPOINT_RECORDS" in text
    assert "AUDIT_CHECKPOINT_WEBHOOK" in text
    assert "AUDIT_CHECKPOINT_SYSLOG" in text


def test_full_queue_drops_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sink whose receiver is stuck drops what overflows its queue, counted."""
    monkeypatch.setattr(sinks_module, "QUEUE_SIZE", 2)
    stuck = threading.Event()

    class Stuck(SyslogSink):
        def _send(self, entry: object) -> None:
            stuck.wait(60)

    sink = Stuck("udp://127.0.0.1:9")
    for i in range(10):
        sink.deliver({"size": i, "root": "", "ts": 0.0, "note": ""})
    assert sink.dropped >= 10 - 2 - 1
    stuck.set()
    sink.close()
