"""Helpers shared by the attacks in tests/security."""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import ssl
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from harness import LiveNode

#: How an attack meets its sandbox (invariant 4): `cold`, the first call of a sandbox that
#: has just started; `warm`, a sandbox (and for `isolation: warm` a worker) that has
#: already served a call. Every test asking for the `fn` or `started` fixture (see
#: tests/security/conftest.py) runs once with each.
STARTS = ("cold", "warm")


class Ready(Protocol):
    """The `started` fixture: readies a function for the test's start; returns its name."""

    def __call__(self, name: str, *, just_deployed: bool = False) -> str: ...


def in_both_modes(*functions: str) -> pytest.MarkDecorator:
    """Run the test with `fn` = each of `functions` and its `-warm` copy, from each start."""
    names = [n for f in functions for n in (f, f"{f}-warm")]
    return pytest.mark.parametrize("fn", names, indirect=True)


#: Functions that run the same code in both isolation modes (invariant 4).
PROBES = in_both_modes("probe")
ATTACKERS = in_both_modes("sec-attack")

#: The only keys a denial problem document may carry. `message` repeats `detail` on the
#: Lambda Invoke API, where boto3 reads an error's message from it.
PROBLEM_KEYS = {"type", "title", "status", "detail", "request_id", "message"}
#: What a failed call adds for a caller allowed to read the function's logs.
FAILURE_KEYS = {"errorType", "errorMessage"}


def attack(node: LiveNode, fn: str, op: str, **args: Any) -> dict[str, Any]:
    """Run one op of a hostile function; the call itself must succeed."""
    r = node.invoke(fn, {"op": op, **args})
    assert r.status_code == 200, f"{fn} {op}: {r.status_code} {r.text[:2000]}"
    result: dict[str, Any] = r.json()  # every op replies with a JSON object
    return result


def call_meta(function: str, seconds: float = 30) -> bytes:
    """The metadata of one call for `SandboxPool.invoke`, its deadline `seconds` away."""
    return json.dumps(
        {"request_id": "r", "function": function, "version": 1, "deadline": time.time() + seconds}
    ).encode()


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """`r` is an RFC 9457 problem with `status` that carries nothing beyond the basics."""
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert set(body) <= PROBLEM_KEYS | (FAILURE_KEYS if status >= 500 else set()), body
    return body


def audit_records(node: LiveNode, request_id: str, n: int = 2000) -> list[dict[str, Any]]:
    """The audit records that name `request_id`."""
    with node.client() as c:
        r = c.get("/v1/audit", params={"n": n})
    assert r.status_code == 200, r.text
    return [rec for rec in r.json() if rec["detail"].get("request_id") == request_id]


def targz(files: dict[str, bytes]) -> bytes:
    """A bundle archive (tar.gz) of `files` made by hand: `build_bundle` would check the
    manifest first, as the node does, and refuse what an attack sends."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def string_function(root: Path, name: str, extra: str = "") -> Path:
    """A new function directory under `root` whose handler returns a string of
    `event["n"]` bytes (its JSON is n + 2); `extra`: more manifest lines."""
    d = root / f"{name}-{secrets.token_hex(3)}"
    d.mkdir()
    (d / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 128\ntimeout_s: 10\n{extra}"
    )
    (d / "main.py").write_text("def handler(event, context):\n    return 'a' * event['n']\n")
    return d


def bundle_dir(node: LiveNode, name: str) -> Path:
    """Where the node keeps the current bundle of `name`, on the host."""
    with node.client() as c:
        digest: str = c.get(f"/v1/functions/{name}").json()["digest"]
    return node.data_dir / "bundles" / digest


def process_names() -> dict[int, str]:
    """comm of every process on the host, as the host sees it."""
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    out[int(entry)] = f.read().strip()
            except OSError:
                continue
    return out


def read_until_closed(
    s: ssl.SSLSocket, within: float, until: bytes | None = None
) -> tuple[bytes, bool]:
    """What the node sends within `within` seconds, and whether it closed meanwhile; with
    `until`, only up to that marker, read byte by byte so nothing after it is taken (the
    interim 100, a head before the body the test sends next)."""
    data = b""
    end = time.monotonic() + within
    while (until is None or until not in data) and (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            chunk = s.recv(65536 if until is None else 1)
        except TimeoutError:
            return data, False
        except OSError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


class Listener:
    """A TCP server on `address` (loopback) that counts the connections it accepts and
    hands each to `handle` (which closes it), on a thread of its own."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self._sock = socket.create_server((address, 0))
        self.port = int(self._sock.getsockname()[1])
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        conn.close()

    def close(self) -> None:
        self._sock.close()
