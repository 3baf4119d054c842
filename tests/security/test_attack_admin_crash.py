"""Admin operations across a SIGKILL of the node: nothing answered is lost, nothing is half-made.

Each attack starts a real node (tests/harness.py), changes its state through the admin
API, and kills it with SIGKILL: `donjon serve` and every process under it (its audit
writer, its sandboxes) at once, as a kill of the node's cgroup or the host's OOM killer
would. Then the node is served again on the same data dir. Three kill points:

- after the 2xx answer: what was answered is there and works, with its audit record;
- the moment the change is committed (a reader of the node's SQLite file sees it and
  kills): a change that was applied is complete and has its audit record;
- while a long operation runs (a large deploy, a rekey of many secrets), at several
  delays drawn with a fixed seed: old state or new, never half of one.

Every attack ends with `donjon audit verify` on the restarted node's log.
"""

from __future__ import annotations

import asyncio
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from async_support import bundle, invoke_async, wait_for
from donjon.bundle import build_bundle
from donjon.config import load_settings
from donjon.store import SecretStore, connect
from donjon.vault import MasterKey
from donjon.vault.keyring import Keyring, open_vault
from harness import LiveNode, donjon_env, run_cli, start_node
from jwt_support import SigningKey, jwks

pytestmark = pytest.mark.slow  # nodes of their own, killed on purpose


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


def kill_and_serve_again(node: LiveNode) -> None:
    kill_node(node)
    node.serve_again()


def verify_intact(node: LiveNode) -> None:
    done = run_cli(node.env(), "audit", "verify", "--output", "json", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["ok"] is True, done.stdout


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
    """Kills the node the moment a read of its database (`sql`) says the change committed
    (or only the processes `victims`, if given)."""

    def __init__(
        self,
        node: LiveNode,
        sql: str,
        committed: Callable[[list[Any]], bool],
        victims: list[int] | None = None,
    ) -> None:
        self.node, self.sql, self.committed, self.victims = node, sql, committed, victims
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
                    seen = conn.execute(self.sql).fetchall()
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


def test_deploy_answered_then_killed_serves_the_new_version(tmp_path: Path) -> None:
    """A deploy answered 201 before the kill serves its version after the restart."""
    node = start_node(tmp_path / "data")
    try:
        assert deploy(node, reader(tmp_path, "one")).status_code == 201
        r = deploy(node, reader(tmp_path, "two"))
        assert r.status_code == 201, r.text
        kill_and_serve_again(node)
        assert read(node)["tag"] == "two"
        assert audited(node, "function.deploy", "reader@2")
        verify_intact(node)
    finally:
        node.stop()


def test_function_rm_answered_then_killed_stays_removed(tmp_path: Path) -> None:
    """A function removed (204) before the kill is gone after the restart."""
    node = start_node(tmp_path / "data")
    try:
        assert deploy(node, reader(tmp_path, "one")).status_code == 201
        answered(node, "DELETE", "/v1/functions/reader", 204)
        kill_and_serve_again(node)
        assert node.invoke("reader", {}).status_code == 404
        assert audited(node, "function.delete", "reader")
        verify_intact(node)
    finally:
        node.stop()


def test_keys_answered_then_killed_keep_what_was_answered(tmp_path: Path) -> None:
    """Keys made, rotated and revoked before the kill authenticate as answered after it."""
    # The made key and the rotated key's new secret authenticate; the revoked key and the
    # rotated key's old secret (no overlap) do not, from the first request on.
    node = start_node(tmp_path / "data")
    try:
        made = node.create_key("made", "invoker")
        rotated = node.create_key("rotated", "invoker")
        revoked = node.create_key("revoked", "invoker")
        assert authenticates(node, revoked["key"])
        answered(node, "DELETE", f"/v1/keys/{revoked['id']}", 204)
        new = answered(node, "POST", f"/v1/keys/{rotated['id']}/rotate", 201, json={"overlap_s": 0})
        kill_and_serve_again(node)
        assert not authenticates(node, revoked["key"])  # the first request after the start
        assert authenticates(node, made["key"])
        assert authenticates(node, new["key"])
        assert not authenticates(node, rotated["key"])
        assert audited(node, "key.create", f"key:{made['id']}")
        assert audited(node, "key.revoke", f"key:{revoked['id']}")
        assert audited(node, "key.rotate", f"key:{rotated['id']}")
        verify_intact(node)
    finally:
        node.stop()


def test_secret_rotate_answered_then_killed_is_what_the_function_reads(tmp_path: Path) -> None:
    """A secret rotated (201) before the kill is the version its function reads after it."""
    node = start_node(tmp_path / "data")
    try:
        set_secret(node, "token", "first value")
        assert deploy(node, reader(tmp_path, "one", ("token",))).status_code == 201
        assert read(node)["secrets"] == {"token": digest("first value")}
        done = answered(node, "POST", "/v1/secrets/token/versions", 201, json={"value": "second"})
        assert done["version"] == 2
        kill_and_serve_again(node)
        assert read(node)["secrets"] == {"token": digest("second")}
        assert [r["detail"]["version"] for r in audited(node, "secret.rotate", "secret:token")] == [
            2
        ]
        verify_intact(node)
    finally:
        node.stop()


def test_rekey_answered_then_killed_opens_every_secret(tmp_path: Path) -> None:
    """After each of two rekeys answered before a kill, every secret opens for its function."""
    # The first rekey makes vault.key, the second replaces it.
    node = start_node(tmp_path / "data")
    try:
        names = tuple(f"s{i}" for i in range(5))
        for name in names:
            set_secret(node, name, f"value of {name}")
        assert deploy(node, reader(tmp_path, "one", names)).status_code == 201
        want = {name: digest(f"value of {name}") for name in names}
        for n in (1, 2):
            done = answered(node, "POST", "/v1/vault/rekey", 200)
            assert done["rewrapped"] == len(names)
            kill_and_serve_again(node)
            assert read(node)["secrets"] == want
            assert len(audited(node, "vault.rekey", "vault")) == n
        verify_intact(node)
    finally:
        node.stop()


def test_roles_quotas_issuers_secrets_dlq_answered_then_killed_are_kept(tmp_path: Path) -> None:
    """Roles, quotas, issuers, secrets and a DLQ purge answered before a kill stay, audited."""
    # Role apply/rm, quota set/rm, issuer add/rm, secret set/rm, DLQ purge.
    node = start_node(tmp_path / "data")
    try:
        assert deploy(node, reader(tmp_path, "one")).status_code == 201
        answered(node, "POST", "/v1/roles", 201, json=ROLE)
        answered(node, "PUT", "/v1/quotas/function:reader", 201, json={"invocations": 1})
        answered(node, "POST", "/v1/issuers", 201, json=issuer())
        set_secret(node, "kept", "v")
        set_secret(node, "dropped", "v")
        answered(node, "DELETE", "/v1/secrets/dropped", 204)
        dead = dead_letters(node, 2)
        assert answered(node, "DELETE", "/v1/dlq", 200)["purged"] == 2
        kill_and_serve_again(node)
        roles = [r["name"] for r in answered(node, "GET", "/v1/roles", 200)]
        assert "auditor-crash" in roles
        quotas = [q["subject"] for q in answered(node, "GET", "/v1/quotas", 200)]
        assert "function:reader" in quotas
        assert [i["name"] for i in answered(node, "GET", "/v1/issuers", 200)] == ["crash-issuer"]
        assert [s["name"] for s in answered(node, "GET", "/v1/secrets", 200)] == ["kept"]
        assert answered(node, "GET", "/v1/dlq", 200) == []
        assert all(answered(node, "GET", f"/v1/dlq/{i}", 404, params={}) is not None for i in dead)
        for action, target in [
            ("role.apply", "role:auditor-crash"),
            ("quota.set", "function:reader"),
            ("issuer.add", "issuer:crash-issuer"),
            ("secret.set", "secret:kept"),
            ("secret.rm", "secret:dropped"),
            ("invocation.purge", "*"),
        ]:
            assert audited(node, action, target), action
        # The removals, answered before a second kill.
        answered(node, "DELETE", "/v1/roles/auditor-crash", 200)
        answered(node, "DELETE", "/v1/quotas/function:reader", 200)
        answered(node, "DELETE", "/v1/issuers/crash-issuer", 204)
        kill_and_serve_again(node)
        roles = [r["name"] for r in answered(node, "GET", "/v1/roles", 200)]
        assert "auditor-crash" not in roles
        assert answered(node, "GET", "/v1/quotas", 200) == []
        assert answered(node, "GET", "/v1/issuers", 200) == []
        for action, target in [
            ("role.remove", "role:auditor-crash"),
            ("quota.rm", "function:reader"),
            ("issuer.remove", "issuer:crash-issuer"),
        ]:
            assert audited(node, action, target), action
        verify_intact(node)
    finally:
        node.stop()


# -- killed the moment the change commits -------------------------------------------------

Context = dict[str, Any]


@dataclass(frozen=True)
class AtCommit:
    """One admin change killed the moment a reader of the database sees it committed."""

    #: Makes the state the change starts from; what the other steps need to know.
    prepare: Callable[[LiveNode, Path], Context]
    #: What a reader of the database runs, and when its rows say the change committed.
    sql: Callable[[Context], str]
    committed: Callable[[list[Any]], bool]
    #: The request: method, path and httpx keyword arguments.
    request: Callable[[Context], tuple[str, str, dict[str, Any]]]
    #: The change's audit record: action, and whether a record's target or detail is its.
    action: str
    mine: Callable[[dict[str, Any], Context], bool]
    #: After the restart: asserts the change (applied, as the reader saw) works whole.
    works: Callable[[LiveNode, Context], None]


def _with_key(node: LiveNode, _root: Path) -> Context:
    return {"key": node.create_key("victim", "invoker")}


def _with_reader(secrets: tuple[str, ...]) -> Callable[[LiveNode, Path], Context]:
    def prepare(node: LiveNode, root: Path) -> Context:
        values = {name: f"value of {name}" for name in secrets}
        for name, value in values.items():
            set_secret(node, name, value)
        assert deploy(node, reader(root, "one", secrets)).status_code == 201
        return {"root": root, "values": values}

    return prepare


def _with_dead(node: LiveNode, _root: Path) -> Context:
    return {"dead": dead_letters(node, 2)}


def _with_setup(
    *steps: tuple[str, str, int, dict[str, Any]],
) -> Callable[[LiveNode, Path], Context]:
    def prepare(node: LiveNode, root: Path) -> Context:
        assert deploy(node, reader(root, "one")).status_code == 201
        for method, path, want, kwargs in steps:
            answered(node, method, path, want, **kwargs)
        return {}

    return prepare


def _count(sql: str) -> Callable[[Context], str]:
    return lambda _ctx: sql


def _reads(node: LiveNode, ctx: Context, tag: str = "one") -> None:
    answer = read(node)
    assert answer["tag"] == tag
    assert answer["secrets"] == {n: digest(v) for n, v in ctx["values"].items()}


def _opens_rotated(node: LiveNode, ctx: Context) -> None:
    ctx["values"]["token"] = "second value"
    _reads(node, ctx)


def _listed(path: str, field: str, name: str, present: bool) -> Callable[[LiveNode, Context], None]:
    def check(node: LiveNode, _ctx: Context) -> None:
        names = [item[field] for item in answered(node, "GET", path, 200)]
        assert (name in names) is present, names

    return check


def _no_check(_node: LiveNode, _ctx: Context) -> None:
    """Nothing more to try (a new key's secret was never shown: the kill came first)."""


AT_COMMIT: dict[str, AtCommit] = {
    "key-create": AtCommit(
        lambda node, root: {},
        _count("SELECT count(*) FROM api_keys WHERE name = 'at-commit'"),
        lambda rows: rows[0][0] == 1,
        lambda ctx: ("POST", "/v1/keys", {"json": {"name": "at-commit", "role": "invoker"}}),
        "key.create",
        lambda r, ctx: r["detail"].get("name") == "at-commit",
        _no_check,
    ),
    "key-revoke": AtCommit(
        _with_key,
        lambda ctx: f"SELECT revoked_at FROM api_keys WHERE id = '{ctx['key']['id']}'",  # noqa: S608 - a key id the node made
        lambda rows: rows[0][0] is not None,
        lambda ctx: ("DELETE", f"/v1/keys/{ctx['key']['id']}", {}),
        "key.revoke",
        lambda r, ctx: r["target"] == f"key:{ctx['key']['id']}",
        lambda node, ctx: _assert(not authenticates(node, ctx["key"]["key"])),
    ),
    "key-rotate": AtCommit(
        _with_key,
        lambda ctx: f"SELECT previous_digest FROM api_keys WHERE id = '{ctx['key']['id']}'",  # noqa: S608 - a key id the node made
        lambda rows: rows[0][0] is not None,
        lambda ctx: ("POST", f"/v1/keys/{ctx['key']['id']}/rotate", {"json": {"overlap_s": 0}}),
        "key.rotate",
        lambda r, ctx: r["target"] == f"key:{ctx['key']['id']}",
        lambda node, ctx: _assert(not authenticates(node, ctx["key"]["key"])),
    ),
    "secret-set": AtCommit(
        _with_reader(()),
        _count("SELECT count(*) FROM secret_versions WHERE name = 'fresh'"),
        lambda rows: rows[0][0] == 1,
        lambda ctx: ("POST", "/v1/secrets/fresh", {"json": {"value": "fresh value"}}),
        "secret.set",
        lambda r, ctx: r["target"] == "secret:fresh",
        lambda node, ctx: _assert(
            deploy(node, reader(ctx["root"], "two", ("fresh",))).status_code == 201
            and read(node)["secrets"] == {"fresh": digest("fresh value")}
        ),
    ),
    "secret-rotate": AtCommit(
        _with_reader(("token",)),
        _count("SELECT max(version) FROM secret_versions WHERE name = 'token'"),
        lambda rows: rows[0][0] == 2,
        lambda ctx: ("POST", "/v1/secrets/token/versions", {"json": {"value": "second value"}}),
        "secret.rotate",
        lambda r, ctx: r["target"] == "secret:token",
        _opens_rotated,
    ),
    "secret-rm": AtCommit(
        _with_setup(("POST", "/v1/secrets/gone", 201, {"json": {"value": "v"}})),
        _count("SELECT count(*) FROM secrets WHERE name = 'gone'"),
        lambda rows: rows[0][0] == 0,
        lambda ctx: ("DELETE", "/v1/secrets/gone", {}),
        "secret.rm",
        lambda r, ctx: r["target"] == "secret:gone",
        _listed("/v1/secrets", "name", "gone", present=False),
    ),
    "role-apply": AtCommit(
        _with_setup(),
        _count("SELECT count(*) FROM roles WHERE name = 'auditor-crash'"),
        lambda rows: rows[0][0] == 1,
        lambda ctx: ("POST", "/v1/roles", {"json": ROLE}),
        "role.apply",
        lambda r, ctx: r["target"] == "role:auditor-crash",
        _listed("/v1/roles", "name", "auditor-crash", present=True),
    ),
    "role-rm": AtCommit(
        _with_setup(("POST", "/v1/roles", 201, {"json": ROLE})),
        _count("SELECT count(*) FROM roles WHERE name = 'auditor-crash'"),
        lambda rows: rows[0][0] == 0,
        lambda ctx: ("DELETE", "/v1/roles/auditor-crash", {}),
        "role.remove",
        lambda r, ctx: r["target"] == "role:auditor-crash",
        _listed("/v1/roles", "name", "auditor-crash", present=False),
    ),
    "quota-set": AtCommit(
        _with_setup(),
        _count("SELECT count(*) FROM quotas WHERE subject = 'function:reader'"),
        lambda rows: rows[0][0] == 1,
        lambda ctx: ("PUT", "/v1/quotas/function:reader", {"json": {"invocations": 1}}),
        "quota.set",
        lambda r, ctx: r["target"] == "function:reader",
        _listed("/v1/quotas", "subject", "function:reader", present=True),
    ),
    "quota-rm": AtCommit(
        _with_setup(("PUT", "/v1/quotas/function:reader", 201, {"json": {"invocations": 1}})),
        _count("SELECT count(*) FROM quotas WHERE subject = 'function:reader'"),
        lambda rows: rows[0][0] == 0,
        lambda ctx: ("DELETE", "/v1/quotas/function:reader", {}),
        "quota.rm",
        lambda r, ctx: r["target"] == "function:reader",
        _listed("/v1/quotas", "subject", "function:reader", present=False),
    ),
    "issuer-add": AtCommit(
        _with_setup(),
        _count("SELECT count(*) FROM issuers WHERE name = 'crash-issuer'"),
        lambda rows: rows[0][0] == 1,
        lambda ctx: ("POST", "/v1/issuers", {"json": issuer()}),
        "issuer.add",
        lambda r, ctx: r["target"] == "issuer:crash-issuer",
        _listed("/v1/issuers", "name", "crash-issuer", present=True),
    ),
    "issuer-rm": AtCommit(
        _with_setup(("POST", "/v1/issuers", 201, {"json": issuer()})),
        _count("SELECT count(*) FROM issuers WHERE name = 'crash-issuer'"),
        lambda rows: rows[0][0] == 0,
        lambda ctx: ("DELETE", "/v1/issuers/crash-issuer", {}),
        "issuer.remove",
        lambda r, ctx: r["target"] == "issuer:crash-issuer",
        _listed("/v1/issuers", "name", "crash-issuer", present=False),
    ),
    "deploy": AtCommit(
        _with_reader(("token",)),
        _count("SELECT count(*) FROM function_versions WHERE name = 'reader'"),
        lambda rows: rows[0][0] == 2,
        lambda ctx: (
            "POST",
            "/v1/functions",
            {
                "content": build_bundle(reader(ctx["root"], "two", ("token",)))[1],
                "params": {"unsafe_skip_scan": "true"},
            },
        ),
        "function.deploy",
        lambda r, ctx: r["target"] == "reader@2",
        lambda node, ctx: _reads(node, ctx, "two"),
    ),
    "function-rm": AtCommit(
        _with_setup(),
        _count("SELECT count(*) FROM functions WHERE name = 'reader'"),
        lambda rows: rows[0][0] == 0,
        lambda ctx: ("DELETE", "/v1/functions/reader", {}),
        "function.delete",
        lambda r, ctx: r["target"] == "reader",
        lambda node, ctx: _assert(node.invoke("reader", {}).status_code == 404),
    ),
    "vault-rekey": AtCommit(
        _with_reader(("s1", "s2", "s3")),
        _count("SELECT DISTINCT kek_id FROM secret_versions"),
        lambda rows: bool(rows) and rows[0][0] != MASTER_KEK[0],
        lambda ctx: ("POST", "/v1/vault/rekey", {}),
        "vault.rekey",
        lambda r, ctx: r["outcome"] == "ok",
        _reads,
    ),
    "quarantine": AtCommit(
        _with_setup(),
        _count("SELECT count(*) FROM quarantines WHERE name = 'reader'"),
        lambda rows: rows[0][0] == 1,
        lambda ctx: ("POST", "/v1/functions/reader/quarantine", {"json": {"reason": "crash"}}),
        "response.quarantine",
        lambda r, ctx: r["target"] == "function:reader" and r["outcome"] == "ok",
        lambda node, ctx: _assert(node.invoke("reader", {}).status_code == 503),
    ),
    "release": AtCommit(
        _with_setup(("POST", "/v1/functions/reader/quarantine", 201, {"json": {"reason": "x"}})),
        _count("SELECT count(*) FROM quarantines WHERE name = 'reader'"),
        lambda rows: rows[0][0] == 0,
        lambda ctx: ("POST", "/v1/functions/reader/release", {}),
        "function.release",
        lambda r, ctx: r["target"] == "function:reader",
        lambda node, ctx: _assert(read(node)["tag"] == "one"),
    ),
    "dlq-purge": AtCommit(
        _with_dead,
        _count("SELECT count(*) FROM invocations WHERE status = 'dead'"),
        lambda rows: rows[0][0] == 0,
        lambda ctx: ("DELETE", "/v1/dlq", {}),
        "invocation.purge",
        lambda r, ctx: r["target"] == "*",
        lambda node, ctx: _assert(answered(node, "GET", "/v1/dlq", 200) == []),
    ),
    "dlq-redrive": AtCommit(
        _with_dead,
        lambda ctx: f"SELECT status FROM invocations WHERE id = '{ctx['dead'][0]}'",  # noqa: S608 - an id the node made
        lambda rows: rows[0][0] != "dead",
        lambda ctx: ("POST", f"/v1/dlq/{ctx['dead'][0]}/redrive", {}),
        "invocation.redrive",
        lambda r, ctx: r["detail"].get("invocation_id") == ctx["dead"][0],
        lambda node, ctx: _assert(wait_for(node, ctx["dead"][0])["attempts"] >= 1),
    ),
}

#: The vault's key id before any rekey (read by the rekey case at its start).
MASTER_KEK: list[str] = [""]


def _assert(holds: bool) -> None:
    assert holds


@pytest.mark.parametrize("case", list(AT_COMMIT), ids=list(AT_COMMIT))
def test_admin_change_killed_at_its_commit_is_whole_and_audited(tmp_path: Path, case: str) -> None:
    """A change committed before the kill is in force, whole and audited after the restart."""
    attack = AT_COMMIT[case]
    node = start_node(tmp_path / "data")
    try:
        ctx = attack.prepare(node, tmp_path)
        if case == "vault-rekey":
            MASTER_KEK[0] = query(node, "SELECT kek_id FROM secret_versions")[0][0]
        sql = attack.sql(ctx)
        assert not attack.committed(query(node, sql)), "the change is there before it is made"
        method, path, kwargs = attack.request(ctx)
        with CommitWatch(node, sql, attack.committed) as watch:
            answer = send(node, method, path, **kwargs)
            assert watch.fired.wait(60), answer.text if answer is not None else "no answer"
        assert answer is None or answer.is_success, answer.text
        node.serve_again()
        assert attack.committed(query(node, sql))  # committed, so kept
        mine = [r for r in records(node, attack.action) if attack.mine(r, ctx)]
        assert mine, f"{case}: the change was kept and the audit log does not show it"
        attack.works(node, ctx)
        verify_intact(node)
    finally:
        node.stop()


def test_key_revoke_whose_audit_writer_is_killed_at_its_commit_is_answered_done(
    tmp_path: Path,
) -> None:
    """A revocation committed as its audit writer is killed is answered 204 and audited."""
    # Not "not completed" (500) for a change that was made; its record in the log
    # without a restart of the node.
    node = start_node(tmp_path / "data")
    try:
        key = node.create_key("victim", "invoker")
        sql = f"SELECT revoked_at FROM api_keys WHERE id = '{key['id']}'"  # noqa: S608 - an id the node made
        writers = audit_writers(node)
        assert len(writers) == 1, writers
        writer = writers[0]
        with CommitWatch(node, sql, lambda rows: rows[0][0] is not None, [writer]) as watch:
            answer = send(node, "DELETE", f"/v1/keys/{key['id']}")
            assert watch.fired.wait(60)
        assert answer is not None, "no answer"
        assert answer.status_code == 204, answer.text  # the key is revoked: say so
        assert not authenticates(node, key["key"])
        assert audited(node, "key.revoke", f"key:{key['id']}")
        assert audit_writers(node) != [writer]
    finally:
        node.stop()
    verify_intact(node)


# -- killed while a long operation runs ---------------------------------------------------

#: The seed of the kill delays: the same delays on every run.
SEED = 20261204
#: Kills per attack, each at a delay drawn from 0 to 1.5 times the operation's own length
#: (the last third: kills near or after its end, in the window of its last steps).
KILLS = 4
SPAN = 1.5
#: Secrets in the vault the rekey attack re-wraps.
MANY = 1500
#: Bytes of data files in the large deploy's bundle (random: the archive is as large).
LARGE = 24 << 20


class InFlight:
    """An admin request sent from a thread; `answer` once it ends (None: no answer)."""

    def __init__(self, node: LiveNode, method: str, path: str, **kwargs: Any) -> None:
        self.answer: httpx.Response | None = None
        self._thread = threading.Thread(
            target=self._send, args=(node, method, path, kwargs), daemon=True
        )
        self._thread.start()

    def _send(self, node: LiveNode, method: str, path: str, kwargs: dict[str, Any]) -> None:
        self.answer = send(node, method, path, **kwargs)

    def join(self) -> httpx.Response | None:
        self._thread.join(120)
        assert not self._thread.is_alive()
        return self.answer


def _took(work: Callable[[], object]) -> float:
    """How long `work` ran (to draw kill delays within it; never asserted)."""
    start = time.monotonic()
    work()
    return time.monotonic() - start


def _current(node: LiveNode, name: str) -> tuple[int, str] | None:
    """The version `name` serves as the store says, and that version's bundle digest."""
    rows = query(
        node,
        "SELECT f.version, v.digest FROM functions f JOIN function_versions v"
        " ON v.name = f.name AND v.version = f.version WHERE f.name = ?",
        name,
    )
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


def test_large_deploy_killed_midway_is_all_or_nothing(tmp_path: Path) -> None:
    """A large deploy killed midway leaves the old version or the new one, whole and audited."""
    node = start_node(tmp_path / "data")
    rng = random.Random(SEED)  # noqa: S311 - kill delays, not a secret
    try:
        assert deploy(node, reader(tmp_path, "r0")).status_code == 201
        length = _took(
            lambda: _assert(deploy(node, reader(tmp_path, "r1", padding=LARGE)).is_success)
        )
        serving = "r1"
        outcomes = []
        for k in range(2, 2 + KILLS):
            tag = f"r{k}"
            archive = build_bundle(reader(tmp_path, tag, padding=LARGE))[1]
            before = _current(node, "reader")
            flight = InFlight(
                node, "POST", "/v1/functions", content=archive, params={"unsafe_skip_scan": "true"}
            )
            time.sleep(rng.uniform(0, SPAN * length))
            kill_node(node)
            answer = flight.join()
            node.serve_again()
            now = _current(node, "reader")
            assert now is not None
            tag_now = read(node)["tag"]  # the version the store names answers: its bundle is there
            if now == before:
                assert tag_now == serving and (answer is None or not answer.is_success)
            else:
                assert now[0] > (before or (0, ""))[0]
                assert tag_now == tag, (now, tag_now, tag)
                assert audited(node, "function.deploy", f"reader@{now[0]}"), "deployed, unaudited"
                serving = tag
            outcomes.append("new" if serving == tag else "old")
        print(f"\ndeploy of {LARGE >> 20} MiB took {length:.2f}s; after each kill: {outcomes}")
        verify_intact(node)
    finally:
        node.stop()


def _open_all(node: LiveNode) -> dict[str, str]:
    """Every secret's newest value, opened by the vault code a node runs, from the files
    the restarted node left (the master key, vault.key, the database)."""
    settings = load_settings(donjon_env(node.data_dir))
    keyring = Keyring(MasterKey.load(settings.master_key_path), settings.vault_key_path)
    engine = connect(settings.database_url)
    try:
        store = SecretStore(engine)
        vault = open_vault(store, keyring)

        async def opened() -> dict[str, str]:
            names = sorted(store.names())
            return await vault.open_granted(names)

        return asyncio.run(opened())
    finally:
        engine.dispose()


def _set_all(node: LiveNode, names: list[str], values: dict[str, str]) -> None:
    with node.client() as c:
        for name in names:
            r = c.post(f"/v1/secrets/{name}", json={"value": values[name]})
            assert r.status_code == 201, r.text


def test_rekey_of_many_secrets_killed_midway_opens_every_secret(tmp_path: Path) -> None:
    """A rekey of 1,500 secrets killed midway leaves every secret opening, under one key."""
    # Also: no vault.key.new is left, and each rekey that committed is audited.
    node = start_node(tmp_path / "data")
    rng = random.Random(SEED + 1)  # noqa: S311 - kill delays, not a secret
    try:
        values = {f"s{i:04d}": f"value {i}" for i in range(MANY)}
        names = sorted(values)
        with ThreadPoolExecutor(4) as pool:  # through the API: four clients, one connection each
            list(
                pool.map(lambda part: _set_all(node, part, values), [names[i::4] for i in range(4)])
            )
        granted = tuple(sorted(values)[:5])
        assert deploy(node, reader(tmp_path, "one", granted)).status_code == 201
        want = {name: digest(values[name]) for name in granted}
        length = _took(lambda: answered(node, "POST", "/v1/vault/rekey", 200))
        rekeys = 1
        outcomes = []
        for _ in range(KILLS):
            (before,) = query(node, "SELECT DISTINCT kek_id FROM secret_versions")
            flight = InFlight(node, "POST", "/v1/vault/rekey")
            time.sleep(rng.uniform(0, SPAN * length))
            kill_node(node)
            flight.join()
            node.serve_again()
            after = query(node, "SELECT DISTINCT kek_id FROM secret_versions")
            assert len(after) == 1, after  # one transaction: never some rows of each key
            assert not (node.data_dir / "vault.key.new").exists()
            if after[0] != before:
                rekeys += 1
            outcomes.append("new" if after[0] != before else "old")
            assert len(audited(node, "vault.rekey", "vault")) >= rekeys
            assert read(node)["secrets"] == want
            assert _open_all(node) == values
        print(f"\nrekey of {len(values)} took {length:.2f}s; after each kill: {outcomes}")
        verify_intact(node)
    finally:
        node.stop()


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies() -> None:
    """Overrides tests/security/conftest.py's: this module starts nodes of its own, so the
    session's shared node (and its hostile functions) is not started for it."""
