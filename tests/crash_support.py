"""Killing a node and looking at what it kept: the helpers of the admin crash attacks
(tests/security/test_attack_admin_crash.py and test_attack_admin_commit.py)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from async_support import bundle, invoke_async, wait_for
from donjon.audit import VerifierKey, verify_log
from donjon.bundle import build_bundle
from donjon.store import connect
from harness import LiveNode
from jwt_support import SigningKey, jwks

# -- killing and restarting a node ---------------------------------------------------------


def _children() -> dict[int, list[int]]:
    """Every live process's children, by parent pid (from /proc)."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found.setdefault(int(stat[1]), []).append(int(entry.name))
    return found


def _tree(root: int) -> list[int]:
    """`root` and every process under it."""
    children, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def kill_node(node: LiveNode, pids: list[int] | None = None) -> None:
    """SIGKILL `donjon serve` and every process under it (`pids` if known), all at once:
    each is stopped first (SIGSTOP, `serve` first), so none of them acts on another's
    death (the node answering 500 for its killed audit writer) before it dies too."""
    tree = pids or _tree(node.proc.pid)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    node.proc.wait(30)
    node.stop()  # closes its log; the process is gone already


def kill_and_serve_again(node: LiveNode, *, measured: bool = True) -> None:
    """`kill_node`, then serve again (`measured`: False if that node is killed too)."""
    kill_node(node)
    node.serve_again(measured=measured)


def verify_intact(node: LiveNode) -> None:
    """The node's whole audit log verifies: every record, checkpoint (database and file)
    and the signed head, as `donjon audit verify` checks them (it calls the same
    `verify_log`; tests/audit/test_cli_audit.py runs the command). Called here, in the
    test's process, it saves each check a Python start and its imports: 1-1.4 s of CPU."""
    database = node.data_dir / "donjon.db"
    assert database.is_file(), f"no database in {node.data_dir}"  # connect would make one
    engine = connect(f"sqlite:///{database}")
    try:
        result = verify_log(
            engine,
            VerifierKey.parse((node.data_dir / "audit-signing.pub").read_text()),
            checkpoint_file=node.data_dir / "audit-checkpoints.jsonl",
        )
    finally:
        engine.dispose()
    assert result.ok, result


def records(node: LiveNode, action: str) -> list[dict[str, Any]]:
    """The audit records of `action` in the node's database, oldest first (read directly)."""
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        rows = conn.execute("SELECT record FROM audit_log ORDER BY seq").fetchall()
    found = [json.loads(bytes(raw)) for (raw,) in rows]
    return [r for r in found if r["action"] == action]


def query(node: LiveNode, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{node.data_dir / 'donjon.db'}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


class CommitWatch:
    """Kills the node the moment a read of its database (`sql` with `args`) says the change
    committed (or only the processes `victims`, if given)."""

    def __init__(
        self,
        node: LiveNode,
        sql: str,
        committed: Callable[[list[Any]], bool],
        victims: list[int] | None = None,
        args: tuple[object, ...] = (),
    ) -> None:
        self.node, self.sql, self.committed, self.victims = node, sql, committed, victims
        self.args = args
        self.fired = threading.Event()
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> CommitWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self._thread.join(60)

    def _watch(self) -> None:
        uri = f"file:{self.node.data_dir / 'donjon.db'}?mode=ro"
        pids = _tree(self.node.proc.pid)  # read before: the kill follows the commit at once
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        try:
            while not self.stop.is_set():
                try:
                    seen = conn.execute(self.sql, self.args).fetchall()
                except sqlite3.OperationalError:
                    continue  # busy: read again
                if self.committed(seen):
                    if self.victims is None:
                        kill_node(self.node, pids)
                    else:
                        for pid in self.victims:
                            os.kill(pid, signal.SIGKILL)
                    self.fired.set()
                    return
        finally:
            conn.close()


def audit_writers(node: LiveNode) -> list[int]:
    """The node's audit writer processes (its children running donjon.audit.writer)."""
    found = []
    for pid in _tree(node.proc.pid)[1:]:
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            if b"donjon.audit.writer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def writer_back(node: LiveNode, killed: list[int] | None = None, timeout_s: float = 90.0) -> None:
    """Wait until the node's audit writer appends again (one was killed: the node starts
    another, and refuses calls meanwhile, 503): none of the `killed` writers lives on, a
    writer runs, and `/readyz` answers 200. Waiting for the killed ones first matters: a
    writer just killed may not have been seen dead by the node yet, which answers
    `/readyz` 200 until it does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = audit_writers(node)  # a killed, unreaped writer (a zombie) has no cmdline
        if running and not set(running) & set(killed or ()):
            with contextlib.suppress(httpx.HTTPError), node.client("") as c:
                if c.get("/readyz").status_code == 200:
                    return
        time.sleep(0.2)
    raise AssertionError(f"the node's audit writer did not append again in {timeout_s} s")


def send(node: LiveNode, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
    """The answer to one admin request, or None if the node died before answering."""
    try:
        with node.client() as c:
            return c.request(method, path, **kwargs)
    except httpx.HTTPError:
        return None


def status(node: LiveNode, key: str) -> int:
    """The status of GET /v1/functions with `key`: 200 for a key that authenticates."""
    with node.client(key) as c:
        return c.get("/v1/keys").status_code


def authenticates(node: LiveNode, key: str) -> bool:
    """Whether the node takes `key` as a credential (an answer other than 401). A 5xx
    (an audit writer being replaced fails audited requests closed) is asked again."""
    deadline = time.monotonic() + 60
    with node.client(key) as c:
        while True:
            code = c.get("/v1/functions").status_code
            if code < 500 or time.monotonic() > deadline:
                return code != 401
            time.sleep(0.1)


# -- functions and state the attacks use --------------------------------------------------

#: A function that answers which version of it runs, and a digest of each granted secret.
READER = (
    "import hashlib\n"
    "def handler(event, context):\n"
    "    seen = {n: hashlib.sha256(v.encode()).hexdigest() for n, v in context.secrets.items()}\n"
    "    return {'tag': TAG, 'secrets': seen}\n"
)
#: A function whose async calls always fail: with one attempt, each goes to the DLQ.
FAILING = "def handler(event, context):\n    raise RuntimeError('dead on purpose')\n"


def reader(root: Path, tag: str, secrets: tuple[str, ...] = (), padding: int = 0) -> Path:
    """The `reader` function at `tag`, granted `secrets`; with `padding` bytes of data
    files (a large bundle: a deploy that takes a while)."""
    grant = f"permissions: {{secrets: [{', '.join(secrets)}]}}\n" if secrets else ""
    directory = bundle(root / tag, "reader", f"TAG = {tag!r}\n" + READER, grant)
    rng = random.Random(7)  # noqa: S311 - filler bytes, not a secret
    for i in range(0, padding, 1 << 20):
        (directory / f"data-{i >> 20}.bin").write_bytes(rng.randbytes(min(1 << 20, padding - i)))
    return directory


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def read(node: LiveNode) -> dict[str, Any]:
    """What `reader` answers (its tag and its secrets' digests); asserts a 200."""
    r = node.invoke("reader", {})
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def deploy(node: LiveNode, directory: Path) -> httpx.Response:
    _, archive = build_bundle(directory)
    with node.client() as c:
        return c.post("/v1/functions", content=archive, params={"unsafe_skip_scan": "true"})


def answered(node: LiveNode, method: str, path: str, want: int, **kwargs: Any) -> Any:
    """The JSON (or None) of an admin request that must be answered `want`."""
    with node.client() as c:
        r = c.request(method, path, **kwargs)
    assert r.status_code == want, (method, path, r.status_code, r.text)
    return r.json() if r.content else None


def set_secret(node: LiveNode, name: str, value: str) -> None:
    answered(node, "POST", f"/v1/secrets/{name}", 201, json={"value": value})


def audited(node: LiveNode, action: str, target: str) -> list[dict[str, Any]]:
    return [r for r in records(node, action) if r["target"] == target]


def dead_letters(node: LiveNode, count: int) -> list[str]:
    """`count` invocations of a failing function, each in the dead-letter queue; their ids."""
    root = node.data_dir.parent / "failing-src"
    extra = "retry: {attempts: 1, backoff_s: 0.1, max_age_s: 600}\n"
    assert deploy(node, bundle(root, "failing", FAILING, extra)).status_code == 201
    ids = [invoke_async(node, "failing", {"n": n}).json()["invocation_id"] for n in range(count)]
    for invocation_id in ids:
        assert wait_for(node, invocation_id)["status"] == "dead"
    return ids


ROLE = {
    "name": "auditor-crash",
    "statements": [{"effect": "allow", "actions": ["audit:read"], "resources": ["*"]}],
}


def issuer() -> dict[str, Any]:
    key = SigningKey.generate("crash-k1", "EdDSA")
    return {
        "name": "crash-issuer",
        "issuer": "https://crash.example",
        "audience": "donjon",
        "jwks": jwks(key),
    }


# -- killed right after the answer ---------------------------------------------------------


def must(holds: bool) -> None:
    """An assertion usable in a lambda (a step timed or run by a thread)."""
    assert holds
