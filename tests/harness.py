"""A real Donjon node for tests: an initialised data dir and `donjon serve` on loopback."""

from __future__ import annotations

import atexit
import errno
import io
import itertools
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

from donjon.bundle import build_bundle

FUNCTIONS = Path(__file__).parent / "functions"
EXAMPLES = Path(__file__).parent.parent / "examples"
#: Test functions that open or list whatever path the test names, to look at the sandbox
#: from inside: path traversal by design (DJ-PY-012), which the deploy gate refuses. They
#: test the sandbox, not the gate, so they are deployed with the admin's unsafe_skip_scan
#: (their warm copies too: "NAME-warm"). leak-return (tests/security/test_attack_secret_leaks.py)
#: returns its own secret (DJ-PY-015) to test the runtime alone; a cold start deploys it again.
GATE_REFUSED_PROBES = frozenset({"probe", "sec-isolation", "sec-neighbour", "leak-return"})
#: The offline snapshot of the PyPA advisory database beside the repository.
ADVISORIES = Path(__file__).parent.parent.parent / "shared" / "data" / "pypa-advisory-db"
#: The parsed advisory database, kept for every node the tests start: a node keeps its own
#: in its data dir (scan/deps/advisory_cache.py), keyed by the digest of the database, so
#: a copy made from another node's is used only for the very same database. Parsing it
#: costs a node's start 1.3-2 s; the scan tests parse it themselves, as does the first
#: node of a run.
ADVISORY_CACHE = Path(tempfile.gettempdir()) / f"donjon-tests-advisories-{os.getuid()}"


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when its peer resets it before the handshake.

    CPython's `SSLSocket._create` (3.11.2 here) finds a socket whose peer already reset it
    not connected (getpeername: ENOTCONN), reads one byte to check for data sent before
    the handshake, and raises that read's ECONNRESET without closing the new SSLSocket,
    which holds the socket's descriptor (python/cpython#113280, fixed in later releases).
    A node that exits while the harness polls it (a refused start) resets the poll's
    connection there, and the leak's ResourceWarning failed whichever test's garbage
    collection finalised it."""

    #: Where it was made (`_made_in`), for its repr.
    _made_in = ""

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        try:
            return super().recv(buflen, flags)
        except OSError as e:
            # `_connected` is set once `_create`'s check is over: only that read closes.
            if not hasattr(self, "_connected") and e.errno not in (errno.ENOTCONN, errno.EINVAL):
                self.close()  # nobody else holds this SSLSocket to close it
            raise

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> _ClosingSSLSocket:
        made: _ClosingSSLSocket = super()._create(*args, **kwargs)  # type: ignore[misc] # untyped in typeshed
        made._made_in = _made_in()
        return made

    def __repr__(self) -> str:
        # An unclosed socket's ResourceWarning shows this: it names the test and the lines
        # of tests/ that made the socket, not the test whose garbage collection found it.
        said = super().__repr__()
        return f"{said[:-1]}, made in {self._made_in}>" if self._made_in else said


#: Where the tests' own files are: `_made_in` names the frames of these.
_TESTS = str(Path(__file__).parent) + os.sep


def _made_in() -> str:
    """The test running (pytest's PYTEST_CURRENT_TEST) and the last three lines of tests/
    on the stack that led here: where an SSLSocket was made, for its ResourceWarning."""
    lines: list[str] = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and len(lines) < 3:
        name = frame.f_code.co_filename
        if name.startswith(_TESTS):
            lines.append(f"{name.removeprefix(_TESTS)}:{frame.f_lineno}")
        frame = frame.f_back
    test = os.environ.get("PYTEST_CURRENT_TEST", "no test")
    return f"{test} at {' <- '.join(lines) or 'no line of tests/'}"


# Every TLS socket this process makes is one (clients of httpx, urllib3 and boto3, http.client,
# and the tests' own servers): the reset leak above is CPython's, whoever made the context,
# and an unclosed one, found by a later test's garbage collection, says where it came from
# (ci61b: it named an unread Lambda payload's, tests/lambda_support.py).
ssl.SSLContext.sslsocket_class = _ClosingSSLSocket


def client_tls(cafile: str | None = None) -> ssl.SSLContext:
    """A client TLS context trusting `cafile` (the default roots if None) whose sockets
    are closed when a peer resets them before the handshake (`_ClosingSSLSocket`)."""
    return ssl.create_default_context(cafile=cafile)  # sslsocket_class: see below


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_SOURCES = itertools.count(1)


def fresh_source() -> str:
    """A loopback address no request of this test session has come from yet.

    All of 127.0.0.0/8 reaches the node, so a test can be a new client, whose
    first denial in a window is audited as a record of its own.
    """
    n = next(_SOURCES)
    return f"127.{1 + n // 62500}.{n // 250 % 250}.{2 + n % 250}"


def donjon_env(data_dir: Path, url: str = "", key: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
    env["DONJON_DATA_DIR"] = str(data_dir)
    if url:
        env["DONJON_URL"] = url
    if key:
        env["DONJON_API_KEY"] = key
    return env


def start_up(
    data_dir: Path,
    port: int,
    examples: Path | None = None,
    *,
    cwd: Path | None = None,
    new_session: bool = False,
) -> subprocess.Popen[str]:
    """`donjon up --port PORT [--examples DIR]` on `data_dir`, its output piped (text);
    `new_session`: in a process group of its own, as a terminal would start it."""
    argv = [sys.executable, "-m", "donjon.cli", "up", "--port", str(port)]
    if examples is not None:
        argv += ["--examples", str(examples)]
    return subprocess.Popen(
        argv,
        env=donjon_env(data_dir),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=new_session,
    )


def read_until_serving(proc: subprocess.Popen[str], timeout_s: float = 300) -> list[str]:
    """The lines `up` prints up to its "serving;" line, which ends the list, or until it
    exits or `timeout_s` passes (then the list does not end with it)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("serving;"):
            break
    return lines


def run_cli(
    env: dict[str, str], *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "donjon.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"donjon {' '.join(args)} failed: {done.stderr}")
    return done


@dataclass
class LiveNode:
    """A running `donjon serve` with its admin key."""

    data_dir: Path
    url: str
    admin_key: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes] | None = None

    @property
    def cert(self) -> str:
        return str(self.data_dir / "tls" / "cert.pem")

    @property
    def tls(self) -> ssl.SSLContext:
        return client_tls(self.cert)

    def env(self, key: str | None = None) -> dict[str, str]:
        return donjon_env(self.data_dir, self.url, self.admin_key if key is None else key)

    def client(self, key: str | None = None, source: str | None = None) -> httpx.Client:
        """A client with `key` ("" for none), from the loopback address `source` if given."""
        headers = {} if key == "" else {"authorization": f"Bearer {key or self.admin_key}"}
        transport = (
            None if source is None else httpx.HTTPTransport(verify=self.tls, local_address=source)
        )
        return httpx.Client(
            base_url=self.url, verify=self.tls, headers=headers, timeout=60, transport=transport
        )

    def deploy(self, directory: Path) -> dict[str, Any]:
        _, archive = build_bundle(directory)
        params = {"unsafe_skip_scan": "true"} if _refused_by_the_gate(directory) else {}
        with self.client() as c:
            r = c.post(
                "/v1/functions",
                content=archive,
                headers={"content-type": "application/gzip"},
                params=params,
            )
        if r.status_code != 201:
            raise AssertionError(f"deploy of {directory} failed: {r.status_code} {r.text}")
        result: dict[str, Any] = r.json()
        return result

    def deploy_files(self, key: str, files: Mapping[str, bytes]) -> httpx.Response:
        """`files` (name to content, donjon.yaml among them) as a bundle archive built by
        hand and sent as it is, through the deploy gate: the reply, whatever it is."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        with self.client(key) as c:
            return c.post(
                "/v1/functions",
                content=buf.getvalue(),
                timeout=300,
                headers={"content-type": "application/gzip"},
            )

    def invoke(
        self, name: str, event: Any, key: str | None = None, source: str | None = None
    ) -> httpx.Response:
        with self.client(key, source) as c:
            return c.post(f"/v1/functions/{name}/invoke", content=json.dumps(event))

    def create_key(
        self,
        name: str,
        role: str,
        functions: list[str] | None = None,
        limits: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new key; `limits` its own `rate`, `burst`, `concurrency` (docs/limits.md)."""
        body: dict[str, Any] = {"name": name, "role": role, **(limits or {})}
        if functions is not None:
            body["functions"] = functions
        with self.client() as c:
            r = c.post("/v1/keys", json=body)
        assert r.status_code == 201, r.text
        result: dict[str, Any] = r.json()
        return result

    def serve_again(
        self, extra_env: dict[str, str] | None = None, *, measured: bool = True
    ) -> None:
        """Start `donjon serve` again (after `stop`) on the same data dir and port, with
        `extra_env` for the server only; wait until it is healthy. `measured`: as for
        `start_node`."""
        port = self.url.rsplit(":", 1)[1]
        self.log = open(self.data_dir / "serve.log", "ab")  # noqa: SIM115 - closed by stop()
        env = {**donjon_env(self.data_dir, self.url), **(extra_env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "donjon.cli", "serve", "--port", port],
            env=env if measured else unmeasured(env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise AssertionError(
                    "donjon serve exited at start:\n"
                    + (self.data_dir / "serve.log").read_text()[-3000:]
                )
            try:
                if httpx.get(f"{self.url}/healthz", verify=self.tls, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("donjon serve did not become healthy after a restart")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()


def _refused_by_the_gate(directory: Path) -> bool:
    """Whether `directory` holds one of the GATE_REFUSED_PROBES (or a warm copy of one)."""
    manifest = directory / "donjon.yaml"
    found = re.search(r"^name:\s*(\S+)", manifest.read_text(), re.MULTILINE)
    return found is not None and found.group(1).removesuffix("-warm") in GATE_REFUSED_PROBES


def _copy_cache_files(source: Path, target: Path) -> None:
    """Copy the advisory cache files `target` lacks, each whole or not at all."""
    for path in sorted(source.glob("advisories-*.json")):
        if (target / path.name).exists():
            continue
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".copy-", dir=target)
        os.close(fd)
        shutil.copyfile(path, tmp)
        os.replace(tmp, target / path.name)


#: The variables by which coverage starts itself in a Python the tests start
#: (pyproject.toml: `patch = ["subprocess"]`), in a run under coverage.
COVERAGE_VARS = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")


def unmeasured(env: dict[str, str]) -> dict[str, str]:
    """`env` without COVERAGE_VARS: coverage does not start in the process."""
    return {k: v for k, v in env.items() if k not in COVERAGE_VARS}


def start_node(
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    measured: bool = True,
    fresh: bool = False,
) -> LiveNode:
    """Initialise `data_dir`, start serving on a free port and wait until healthy.

    `extra_env` adds settings (DONJON_*) for the server only. `measured=False`: in a
    run under coverage, coverage does not start in the server and its helpers, for a
    node the test SIGKILLs: a killed process never saves what coverage measured in
    it, and tracing it made its start alone take 1.8 s more CPU. The nodes a test
    process starts share their keys (`initialise`); `fresh=True` gives this one keys of
    its own (a real `donjon init`), for a test that needs two nodes told apart.
    """
    admin_key = initialise(data_dir, fresh=fresh)
    return serve_initialised(data_dir, admin_key, extra_env, measured=measured)


def serve_initialised(
    data_dir: Path,
    admin_key: str,
    extra_env: dict[str, str] | None = None,
    *,
    measured: bool = True,
) -> LiveNode:
    """`start_node` of a data dir the test initialised itself (its admin key given)."""
    _copy_cache_files(ADVISORY_CACHE, data_dir / "cache" / "advisories")
    for _ in range(_PORT_TRIES):
        node = _serve(data_dir, admin_key, extra_env, measured)
        if node is not None:
            return node
        # The free port was taken (by the other test worker) before serve bound it.
    raise AssertionError(
        f"{_PORT_TRIES} free ports were each taken before serve bound them:\n"
        + (data_dir / "serve.log").read_text()
    )


def initialise(data_dir: Path, *, fresh: bool = False) -> str:
    """`donjon init` of `data_dir`; its admin key ("" for a dir initialised before: init
    shows the key once).

    The first call in a test process runs `donjon init` into a data dir of its own, and
    each call for a `data_dir` that holds none of a data dir's files (other files may
    be there) copies that (modes kept): a copy of a fresh data dir is a fresh data dir,
    and the copy saves each node's start the 1-1.6 s of CPU an init takes. Nothing in a
    data dir names its path. The nodes of one test process share their keys (the
    admin's, the vault's, the audit log's, TLS), so a node accepts another's admin key;
    `fresh` runs `donjon init` itself. Tests of `donjon init` run the command.
    """
    if fresh:
        return _init(data_dir)
    if not _INIT_TEMPLATE:
        template = Path(tempfile.mkdtemp(prefix="donjon-tests-init-")) / "data"
        atexit.register(shutil.rmtree, template.parent, True)
        _INIT_TEMPLATE.append((template, _init(template)))
    template, admin_key = _INIT_TEMPLATE[0]
    if any((data_dir / path.name).exists() for path in template.iterdir()):
        return _init(data_dir)  # a data dir already (a node started again on it)
    shutil.copytree(template, data_dir, dirs_exist_ok=True)
    return admin_key


def _init(data_dir: Path) -> str:
    """`donjon init` run on `data_dir`; the admin key it shows ("" if none: it was
    initialised before)."""
    shown = json.loads(run_cli(donjon_env(data_dir), "init", "--json").stdout)["admin_key"]
    return str(shown or "")


#: The data dir `initialise` copies, and its admin key: made once per test process.
_INIT_TEMPLATE: list[tuple[Path, str]] = []


#: Ports tried by `start_node`: a port found free can be taken before serve binds it.
_PORT_TRIES = 3


def _serve(
    data_dir: Path, admin_key: str, extra_env: dict[str, str] | None, measured: bool
) -> LiveNode | None:
    """`donjon serve` on a free port, healthy; None if that port was taken meanwhile."""
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    log = open(data_dir / "serve.log", "wb")  # noqa: SIM115 - lives as long as the server
    env = donjon_env(data_dir, url)
    if ADVISORIES.is_dir():
        env["DONJON_ADVISORIES"] = str(ADVISORIES)
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "donjon.cli", "serve", "--port", str(port)],
        env=env if measured else unmeasured(env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    node = LiveNode(data_dir, url, admin_key, proc, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            node.stop()
            text = (data_dir / "serve.log").read_text()
            if f"port in use: 127.0.0.1:{port}" in text:
                return None
            raise AssertionError(text)
        try:
            if httpx.get(f"{url}/healthz", verify=node.tls, timeout=1).status_code == 200:
                _copy_cache_files(data_dir / "cache" / "advisories", ADVISORY_CACHE)
                return node
        except httpx.HTTPError:
            time.sleep(0.05)
    node.stop()
    raise AssertionError("donjon serve did not become healthy")


def refused_serve(data_dir: Path, extra_env: dict[str, str] | None = None) -> str:
    """`donjon serve` of `data_dir` on a free port, which must exit without serving (a node
    serves that data dir or its database already): what it said."""
    import pytest

    port = free_port()
    env = {**donjon_env(data_dir, f"https://127.0.0.1:{port}"), **(extra_env or {})}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "donjon.cli", "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"donjon serve served {data_dir}, where it had to refuse")
    assert done.returncode != 0, done.stdout + done.stderr
    return done.stdout + done.stderr
