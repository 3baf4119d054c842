"""The sandbox's side of egress, driven through the pool with a stand-in for the egress proxy.

A real sandbox of a function granted egress: its worker finds the standard
proxy variables, reaches 127.0.0.1:3128 in its own network namespace, and
the relay there forwards the connection verbatim to the sandbox's unix socket
after the call's token line. The stand-in (a unix listener in this test)
speaks just enough HTTP proxy to answer; the real proxy is tests/egress/'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

import cgroupfs
from donjon.gateway.problems import status_for
from donjon.sandbox import (
    FunctionBlocked,
    InstanceConfig,
    SandboxHost,
    SandboxPool,
    SandboxUnavailable,
    compile_filters,
    detect_resource_control,
)
from donjon.sandbox.limits import ResourceMode

HANDLER = r"""
import os, socket, urllib.request

def _connect(host):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    s.sendall(f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1024)
        if not chunk:
            return {"status": head.decode(errors="replace"), "echo": None}
        head += chunk
    status, _, rest = head.partition(b"\r\n\r\n")
    s.sendall(b"ping")
    s.shutdown(socket.SHUT_WR)
    data = rest
    while chunk := s.recv(1024):
        data += chunk
    return {"status": status.decode().split("\r\n")[0], "echo": data.decode()}

def handler(event, context):
    names = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy")
    out = {"env": {n: os.environ[n] for n in names if n in os.environ}}
    egress_dir = "/run/donjon-egress"
    out["egress_dir"] = os.listdir(egress_dir) if os.path.isdir(egress_dir) else None
    if event.get("op") == "connect":
        out.update(_connect(event["host"]))
    elif event.get("op") == "urllib":
        with urllib.request.urlopen("http://api.example.com/hello", timeout=20) as r:
            out["body"] = r.read().decode()
    return out
"""

T = TypeVar("T")


@dataclass
class _Channel:
    """One sandbox's socket, as a stand-in for egress/proxy.py's SandboxEgress."""

    socket_dir: Path
    server: asyncio.Server | None = None
    tokens: dict[str, tuple[str, Callable[[str], None] | None]] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)
    #: (token line, request line) of each connection
    seen: list[tuple[str, str]] = field(default_factory=list)
    closed: bool = False

    def begin_call(self, request_id: str, on_refused: Callable[[str], None] | None = None) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (request_id, on_refused)
        return token

    async def end_call(self, token: str) -> None:
        self.tokens.pop(token, None)
        self.ended.append(token)

    async def close(self) -> None:
        self.closed = True
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = (await reader.readline()).decode().rstrip("\n")
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            request = head.split("\r\n")[0]
            self.seen.append((first, request))
            token = first.removeprefix("DONJON-EGRESS/1 ")
            call = self.tokens.get(token)
            if call is None:
                writer.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            elif "blocked.example" in request:
                if call[1] is not None:
                    call[1]("destination not granted: blocked.example:443")
                writer.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            elif request.startswith("GET http://api.example.com/hello "):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
                )
            else:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                writer.write((await reader.read()).upper())
            await writer.drain()
        finally:
            writer.close()


class _Proxy:
    """A stand-in for egress/proxy.py's EgressProxy: one unix socket per sandbox."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.channels: list[_Channel] = []

    async def open_sandbox(
        self,
        function: str,
        version: int,
        egress: Sequence[str],
        egress_attempts: str = "alert",
        owner_uid: int | None = None,
        owner_gid: int | None = None,
    ) -> _Channel:
        directory = self.root / f"{function}-{len(self.channels)}"
        directory.mkdir(mode=0o700)
        channel = _Channel(directory)
        path = directory / "proxy.sock"
        channel.server = await asyncio.start_unix_server(channel.serve, path=str(path))
        os.chmod(path, 0o600)
        if owner_uid is not None and owner_gid is not None:
            os.chown(directory, owner_uid, owner_gid)
            os.chown(path, owner_uid, owner_gid)
        self.channels.append(channel)
        return channel


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "main.py").write_text(HANDLER)
    return tmp_path


@pytest.fixture
def proxy_root() -> Iterator[Path]:
    """Where the stand-in's sockets live: traversable by the sandbox's host uid."""
    root = Path(tempfile.mkdtemp(prefix="donjon-egress-test-"))
    # Like the real runtime dir: traversable by the sandbox's uid, not listable.
    os.chmod(root, 0o711)  # noqa: S103 - traversable, not listable, as the real one
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _config(bundle: Path, *, warm: bool, egress: tuple[str, ...]) -> InstanceConfig:
    return InstanceConfig("egresstest", 1, bundle, "main", "handler", warm, 64, 8, 2, egress=egress)


def _meta() -> bytes:
    return json.dumps(
        {"request_id": "r", "function": "egresstest", "version": 1, "deadline": time.time() + 30}
    ).encode()


def _with_pool(
    bundle: Path, proxy: _Proxy | None, body: Callable[[SandboxPool], Coroutine[Any, Any, T]]
) -> T:
    async def go() -> T:
        host = SandboxHost.detect(bundle.parent / "data")
        pool = SandboxPool(detect_resource_control(), compile_filters(), host, egress=proxy)
        try:
            return await body(pool)
        finally:
            await pool.close()

    return asyncio.run(go())


MODES = pytest.mark.parametrize("warm", [False, True], ids=["invocation", "warm"])
GRANT = ("api.example.com:443",)


@MODES
def test_granted_call_reaches_the_proxy_with_its_token(
    bundle: Path, proxy_root: Path, warm: bool
) -> None:
    """The relay forwards a CONNECT verbatim after the call's token line, both ways."""
    proxy = _Proxy(proxy_root)

    async def body(pool: SandboxPool) -> list[dict[str, Any]]:
        cfg = _config(bundle, warm=warm, egress=GRANT)
        event = b'{"op": "connect", "host": "api.example.com:443"}'
        return [
            json.loads((await pool.invoke(cfg, _meta(), event, 30, request_id=f"req-{i}")).body)
            for i in range(2)
        ]

    results = _with_pool(bundle, proxy, body)
    (channel,) = proxy.channels
    for out in results:
        assert out["status"] == "HTTP/1.1 200 Connection established", out
        assert out["echo"] == "PING"
        assert out["env"] == dict.fromkeys(
            ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"), "http://127.0.0.1:3128"
        )
        assert out["egress_dir"] == []  # the socket is the relay's alone
    # Each call its own token, revoked when the call ended; the sandbox's socket closed.
    tokens = [first.removeprefix("DONJON-EGRESS/1 ") for first, _ in channel.seen]
    assert len(set(tokens)) == 2
    assert channel.ended == tokens
    assert [request for _, request in channel.seen] == ["CONNECT api.example.com:443 HTTP/1.1"] * 2
    assert channel.closed


def test_urllib_uses_the_proxy_variables_unchanged(bundle: Path, proxy_root: Path) -> None:
    """urllib sends an absolute-form request to the relay, which the proxy answers."""
    proxy = _Proxy(proxy_root)

    async def body(pool: SandboxPool) -> dict[str, Any]:
        cfg = _config(bundle, warm=False, egress=GRANT)
        result = await pool.invoke(cfg, _meta(), b'{"op": "urllib"}', 30, request_id="u")
        out: dict[str, Any] = json.loads(result.body)
        return out

    out = _with_pool(bundle, proxy, body)
    assert out["body"] == "hello"
    assert proxy.channels[0].seen[0][1] == "GET http://api.example.com/hello HTTP/1.1"


@MODES
def test_block_policy_ends_the_call(bundle: Path, proxy_root: Path, warm: bool) -> None:
    """A refused attempt under egress_attempts: block ends the call with a 403 error."""
    proxy = _Proxy(proxy_root)

    async def body(pool: SandboxPool) -> tuple[BaseException | None, dict[str, Any]]:
        cfg = _config(bundle, warm=warm, egress=GRANT)
        event = b'{"op": "connect", "host": "blocked.example:443"}'
        try:
            await pool.invoke(cfg, _meta(), event, 30, request_id="b")
            error: BaseException | None = None
        except FunctionBlocked as e:
            error = e
        after = await pool.invoke(cfg, _meta(), b'{"op": "connect", "host": "a:443"}', 30)
        return error, json.loads(after.body)

    error, after = _with_pool(bundle, proxy, body)
    assert isinstance(error, FunctionBlocked)
    assert "blocked.example:443" in error.message
    assert status_for(error) == 403
    assert after["echo"] == "PING"  # the next call is served as usual


def _bwraps(mine: int, before: set[int]) -> list[int]:
    """The bubblewrap processes under the test's own process, those in `before` apart."""
    found = []
    for pid in cgroupfs.descendants(mine):
        with contextlib.suppress(OSError):  # one that exited meanwhile is not one
            if pid not in before and Path(f"/proc/{pid}/cmdline").read_bytes()[:6] == b"bwrap\0":
                found.append(pid)
    return found


def test_blocked_warm_call_that_replied_before_its_kill_retires_its_sandbox(
    bundle: Path, proxy_root: Path
) -> None:
    """A warm worker's reply can beat the supervisor's kill (a busy machine, made here
    by stopping the supervisor): the call still fails 403, and its sandbox goes, so the
    next call is served by a fresh one, never by the worker being killed."""
    proxy = _Proxy(proxy_root)
    mine = os.getpid()
    before = set(cgroupfs.descendants(mine))

    async def body(pool: SandboxPool) -> tuple[BaseException | None, dict[str, Any], int]:
        cfg = _config(bundle, warm=True, egress=GRANT)
        await pool.invoke(cfg, _meta(), b"{}", 30)  # the sandbox is up
        (bwrap,) = _bwraps(mine, before)
        supervisor = cgroupfs.children(bwrap)[0]
        os.kill(supervisor, signal.SIGSTOP)  # its "end" waits unread: the reply comes first
        try:
            event = b'{"op": "connect", "host": "blocked.example:443"}'
            await pool.invoke(cfg, _meta(), event, 30, request_id="b")
            error: BaseException | None = None
        except FunctionBlocked as e:
            error = e
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor, signal.SIGCONT)
        after = await pool.invoke(cfg, _meta(), b'{"op": "connect", "host": "a:443"}', 30)
        assert bwrap not in _bwraps(mine, before)  # the blocked call's sandbox is gone
        return error, json.loads(after.body), pool.cold_starts

    error, after, cold_starts = _with_pool(bundle, proxy, body)
    assert isinstance(error, FunctionBlocked)
    assert status_for(error) == 403
    assert after["echo"] == "PING"
    assert cold_starts == 2  # the call after the blocked one started a sandbox of its own


def test_grant_without_a_proxy_refuses_to_start(bundle: Path) -> None:
    """A function granted egress on a node without a proxy never runs (no direct network)."""

    async def body(pool: SandboxPool) -> None:
        await pool.invoke(_config(bundle, warm=False, egress=GRANT), _meta(), b"{}", 30)

    with pytest.raises(SandboxUnavailable, match="no egress proxy"):
        _with_pool(bundle, None, body)


def test_no_grant_no_relay(bundle: Path, proxy_root: Path) -> None:
    """Without a grant the proxy is never asked, and the worker has no proxy variables."""
    proxy = _Proxy(proxy_root)

    async def body(pool: SandboxPool) -> dict[str, Any]:
        result = await pool.invoke(_config(bundle, warm=False, egress=()), _meta(), b"{}", 30)
        out: dict[str, Any] = json.loads(result.body)
        return out

    out = _with_pool(bundle, proxy, body)
    assert proxy.channels == []
    assert out["env"] == {}
    assert out["egress_dir"] is None


def _in_cgroups(
    processes: list[list[dict[str, str]]], hierarchies: list[str], function: str
) -> tuple[bool, int]:
    """Whether every thread of `processes` is in the function's sandbox cgroups in each
    hierarchy, and how many processes are in a per-call one."""
    inside = all(
        f"/{function}-v1-" in paths[c]
        for threads in processes
        for paths in threads
        for c in hierarchies
    )
    in_calls = sum(
        all("/call-" in threads[0][c] for c in hierarchies if c != "cpu") for threads in processes
    )
    return inside, in_calls


@MODES
def test_every_process_of_an_egress_sandbox_is_in_its_cgroups(
    bundle: Path, proxy_root: Path, warm: bool
) -> None:
    """A function granted egress keeps a worker's parent (its relay) beside the worker:
    bubblewrap, the supervisor, the relay and the worker, every thread of each, are in
    the sandbox's cgroups in each hierarchy, and the relay and worker in a per-call one."""
    resources = detect_resource_control()
    if resources.mode is ResourceMode.RLIMIT:
        pytest.skip("no writable cgroup hierarchy here: rlimits only")
    hierarchies = ["memory", "pids"] if resources.mode is ResourceMode.CGROUP_V1 else [""]
    if "cpu" in resources.hierarchies:
        hierarchies.append("cpu")
    proxy = _Proxy(proxy_root)
    mine = os.getpid()
    before = set(cgroupfs.descendants(mine))  # e.g. a session's scan helper

    async def body(pool: SandboxPool) -> list[list[dict[str, str]]]:
        cfg = _config(bundle, warm=warm, egress=GRANT)
        event = b'{"op": "connect", "host": "api.example.com:443"}'
        await pool.invoke(cfg, _meta(), event, 30, request_id="req-cg")
        # A one-call worker and its relay exit with the call (an exiting process is
        # already out of its cgroups), and the pool makes a spare after it: look until
        # the sandbox is whole, for 10 s at most (a loaded machine may take a while).
        deadline = time.monotonic() + 10
        while True:
            seen = [
                cgroupfs.thread_cgroups(p)
                for p in cgroupfs.descendants(mine)
                if p != mine and p not in before and not cgroupfs.exited(p)
            ]
            inside, in_calls = _in_cgroups(seen, hierarchies, "egresstest")
            if (len(seen) >= 4 and inside and in_calls >= 2) or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.05)

    processes = _with_pool(bundle, proxy, body)
    # bubblewrap, the supervisor, and per worker its relay and itself.
    assert len(processes) >= 4, processes
    inside, in_calls = _in_cgroups(processes, hierarchies, "egresstest")
    assert inside, processes
    assert in_calls >= 2, processes  # the relay and its worker share the call's cgroups
