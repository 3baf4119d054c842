"""Admin changes killed the moment they commit: a change that was applied is complete and
has its audit record (the audit outbox, audit/changes.py). The kill and the checks are
tests/crash_support.py's; test_attack_admin_crash.py has the other kill points."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from async_support import wait_for
from crash_support import (
    ROLE,
    CommitWatch,
    answered,
    audit_writers,
    audited,
    authenticates,
    dead_letters,
    deploy,
    digest,
    issuer,
    must,
    query,
    read,
    reader,
    records,
    send,
    set_secret,
    verify_intact,
)
from donjon.bundle import build_bundle
from harness import LiveNode, start_node

pytestmark = pytest.mark.slow  # nodes of their own, killed on purpose

Context = dict[str, Any]
#: A read of the node's database: SQL and its parameters.
Read = tuple[str, tuple[object, ...]]


@dataclass(frozen=True)
class AtCommit:
    """One admin change killed the moment a reader of the database sees it committed."""

    #: Makes the state the change starts from; what the other steps need to know.
    prepare: Callable[[LiveNode, Path], Context]
    #: What a reader of the database runs, and when its rows say the change committed.
    sql: Callable[[Context], Read]
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


def _count(sql: str) -> Callable[[Context], Read]:
    return lambda _ctx: (sql, ())


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
        lambda ctx: ("SELECT revoked_at FROM api_keys WHERE id = ?", (ctx["key"]["id"],)),
        lambda rows: rows[0][0] is not None,
        lambda ctx: ("DELETE", f"/v1/keys/{ctx['key']['id']}", {}),
        "key.revoke",
        lambda r, ctx: r["target"] == f"key:{ctx['key']['id']}",
        lambda node, ctx: must(not authenticates(node, ctx["key"]["key"])),
    ),
    "key-rotate": AtCommit(
        _with_key,
        lambda ctx: ("SELECT previous_digest FROM api_keys WHERE id = ?", (ctx["key"]["id"],)),
        lambda rows: rows[0][0] is not None,
        lambda ctx: ("POST", f"/v1/keys/{ctx['key']['id']}/rotate", {"json": {"overlap_s": 0}}),
        "key.rotate",
        lambda r, ctx: r["target"] == f"key:{ctx['key']['id']}",
        lambda node, ctx: must(not authenticates(node, ctx["key"]["key"])),
    ),
    "secret-set": AtCommit(
        _with_reader(()),
        _count("SELECT count(*) FROM secret_versions WHERE name = 'fresh'"),
        lambda rows: rows[0][0] == 1,
        lambda ctx: ("POST", "/v1/secrets/fresh", {"json": {"value": "fresh value"}}),
        "secret.set",
        lambda r, ctx: r["target"] == "secret:fresh",
        lambda node, ctx: must(
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
        lambda node, ctx: must(node.invoke("reader", {}).status_code == 404),
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
        lambda node, ctx: must(node.invoke("reader", {}).status_code == 503),
    ),
    "release": AtCommit(
        _with_setup(("POST", "/v1/functions/reader/quarantine", 201, {"json": {"reason": "x"}})),
        _count("SELECT count(*) FROM quarantines WHERE name = 'reader'"),
        lambda rows: rows[0][0] == 0,
        lambda ctx: ("POST", "/v1/functions/reader/release", {}),
        "function.release",
        lambda r, ctx: r["target"] == "function:reader",
        lambda node, ctx: must(read(node)["tag"] == "one"),
    ),
    "dlq-purge": AtCommit(
        _with_dead,
        _count("SELECT count(*) FROM invocations WHERE status = 'dead'"),
        lambda rows: rows[0][0] == 0,
        lambda ctx: ("DELETE", "/v1/dlq", {}),
        "invocation.purge",
        lambda r, ctx: r["target"] == "*",
        lambda node, ctx: must(answered(node, "GET", "/v1/dlq", 200) == []),
    ),
    "dlq-redrive": AtCommit(
        _with_dead,
        lambda ctx: ("SELECT status FROM invocations WHERE id = ?", (ctx["dead"][0],)),
        lambda rows: rows[0][0] != "dead",
        lambda ctx: ("POST", f"/v1/dlq/{ctx['dead'][0]}/redrive", {}),
        "invocation.redrive",
        lambda r, ctx: r["detail"].get("invocation_id") == ctx["dead"][0],
        lambda node, ctx: must(wait_for(node, ctx["dead"][0])["attempts"] >= 1),
    ),
}

#: The vault's key id before any rekey (read by the rekey case at its start).
MASTER_KEK: list[str] = [""]


@pytest.mark.parametrize("case", list(AT_COMMIT), ids=list(AT_COMMIT))
def test_admin_change_killed_at_its_commit_is_whole_and_audited(tmp_path: Path, case: str) -> None:
    """A change committed before the kill is in force, whole and audited after the restart."""
    attack = AT_COMMIT[case]
    node = start_node(tmp_path / "data", measured=False)  # killed at the commit
    try:
        ctx = attack.prepare(node, tmp_path)
        if case == "vault-rekey":
            MASTER_KEK[0] = query(node, "SELECT kek_id FROM secret_versions")[0][0]
        sql, args = attack.sql(ctx)
        assert not attack.committed(query(node, sql, *args)), (
            "the change is there before it is made"
        )
        method, path, kwargs = attack.request(ctx)
        with CommitWatch(node, sql, attack.committed, args=args) as watch:
            answer = send(node, method, path, **kwargs)
            assert watch.fired.wait(60), answer.text if answer is not None else "no answer"
        assert answer is None or answer.is_success, answer.text
        node.serve_again()
        assert attack.committed(query(node, sql, *args))  # committed, so kept
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
        sql = "SELECT revoked_at FROM api_keys WHERE id = ?"
        writers = audit_writers(node)
        assert len(writers) == 1, writers
        writer = writers[0]
        with CommitWatch(
            node, sql, lambda rows: rows[0][0] is not None, [writer], args=(key["id"],)
        ) as watch:
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


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies() -> None:
    """Overrides tests/security/conftest.py's: this module starts nodes of its own, so the
    session's shared node (and its hostile functions) is not started for it."""
