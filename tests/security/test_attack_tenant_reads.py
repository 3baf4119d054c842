"""Two tenants on one node, each a custom role scoped to its own functions (`tna-*`,
`tnb-*`): what tenant A can read of tenant B through the read APIs (audit, proofs,
export, timeline, alerts, responses, quotas, metrics). A scoped read shows only the
records about functions in scope; node-wide records need the action on `*`."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from async_support import bundle
from donjon.bundle import build_bundle
from harness import LiveNode, fresh_source, run_cli
from jwt_support import SigningKey, claims, jwks
from sec_support import assert_problem

_READS = ["audit:read", "alert:read", "quota:manage", "metrics:read"]
_FUNCTION = ["function:read", "function:invoke", "function:logs"]
_CODE = "def handler(event, context):\n    return {'ok': True}\n"


@dataclass(frozen=True)
class Tenant:
    key: str
    function: str
    prefix: str
    role: str


@dataclass(frozen=True)
class Tenants:
    a: Tenant
    b: Tenant


def _tenant(node: LiveNode, root: Path, tag: str) -> Tenant:
    prefix = f"tn{tag}{secrets.token_hex(3)}-"
    role = f"tenant-{tag}-{secrets.token_hex(3)}"
    statement = {"effect": "allow", "actions": [*_READS, *_FUNCTION], "resources": [f"{prefix}*"]}
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": role, "statements": [statement]})
    assert r.status_code == 201, r.text
    function = f"{prefix}fn"
    _deploy_unscanned(node, bundle(root, function, _CODE))
    key: str = node.create_key(f"sec-{role}", role)["key"]
    assert node.invoke(function, {"tenant": tag}, key).status_code == 200
    with node.client() as c:  # a quota on the function: B's shows in no listing of A's
        assert c.put(f"/v1/quotas/function:{function}", json={"invocations": 1000}).is_success
    return Tenant(key, function, prefix, role)


def _deploy_unscanned(node: LiveNode, directory: Path) -> None:
    """Deployed with the scan skipped: the monitor raises `deploy.scan_skipped` about it."""
    _, archive = build_bundle(directory)
    with node.client() as c:
        r = c.post(
            "/v1/functions",
            content=archive,
            headers={"content-type": "application/gzip"},
            params={"unsafe_skip_scan": "true"},
        )
    assert r.status_code == 201, r.text


def _admin_alerts(node: LiveNode, subject: str) -> list[dict[str, Any]]:
    with node.client() as c:
        alerts: list[dict[str, Any]] = c.get("/v1/alerts", params={"n": 1000}).json()
    return [a for a in alerts if a["subject"] == subject]


@pytest.fixture(scope="module")
def tenants(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> Tenants:
    root = tmp_path_factory.mktemp("tenants")
    both = Tenants(_tenant(node, root, "a"), _tenant(node, root, "b"))
    deadline = time.monotonic() + 30
    for t in (both.a, both.b):
        while not _admin_alerts(node, f"function:{t.function}"):
            assert time.monotonic() < deadline, f"no alert about {t.function}"
            time.sleep(0.2)
    return both


def _get(node: LiveNode, key: str, path: str, **params: Any) -> Any:
    with node.client(key, fresh_source()) as c:
        r = c.get(path, params=params)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
    return r


def _names_only(text: str, tenants: Tenants) -> None:
    """`text` names A's function and nothing of B's."""
    assert tenants.b.prefix not in text


def _record_seq(node: LiveNode, function: str, action: str) -> int:
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 10000}).json()
    return next(
        int(r["seq"])
        for r in reversed(records)
        if r["action"] == action and r["target"].startswith(f"{function}@")
    )


def test_scoped_auditor_reads_only_its_functions_records(node: LiveNode, tenants: Tenants) -> None:
    """GET /v1/audit as A: A's function's records, none of B's, none node-wide (keys,
    roles, denials of others); paging with `before` stays in scope."""
    records = _get(node, tenants.a.key, "/v1/audit", n=10000).json()
    _names_only(json.dumps(records), tenants)
    assert any(r["target"].startswith(f"{tenants.a.function}@") for r in records)
    assert not any(r["action"].startswith(("key.", "role.", "node.")) for r in records)
    (newest,) = _get(node, tenants.a.key, "/v1/audit", n=1).json()
    older = _get(node, tenants.a.key, "/v1/audit", n=10000, before=newest["seq"]).json()
    assert [r["seq"] for r in older] == [r["seq"] for r in records][:-1]


def test_scoped_auditor_cannot_prove_another_tenants_record(
    node: LiveNode, tenants: Tenants
) -> None:
    """An inclusion proof carries the record: A gets 404 for B's (as for no record), its
    own proves; the admin still proves B's."""
    seq_b = _record_seq(node, tenants.b.function, "function.invoke")
    seq_a = _record_seq(node, tenants.a.function, "function.invoke")
    deadline = time.monotonic() + 30
    while True:  # the record is covered by a checkpoint once one is signed
        with node.client() as c:
            admin = c.get("/v1/audit/proof", params={"seq": seq_b})
        if admin.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert admin.status_code == 200, admin.text
    assert tenants.b.prefix in admin.json()["record"]
    with node.client(tenants.a.key, fresh_source()) as c:
        theirs = c.get("/v1/audit/proof", params={"seq": seq_b})
        ours = c.get("/v1/audit/proof", params={"seq": seq_a})
    body = assert_problem(theirs, 404)
    _names_only(json.dumps(body), tenants)
    assert ours.status_code == 200, ours.text
    assert tenants.a.function in ours.json()["record"]


def test_scoped_auditor_cannot_export_the_whole_log(node: LiveNode, tenants: Tenants) -> None:
    """The export is every record: a scoped auditor is refused (403), the admin is not."""
    with node.client(tenants.a.key, fresh_source()) as c:
        assert_problem(c.get("/v1/audit/export"), 403)
    with node.client() as c:
        assert c.get("/v1/audit/export").status_code == 200


def test_scoped_auditor_timeline_leaves_out_other_tenants(node: LiveNode, tenants: Tenants) -> None:
    """The timeline as A, filtered on B's function or not at all, shows none of B's records."""
    key = tenants.a.key
    aimed = _get(node, key, "/v1/audit/timeline", function=tenants.b.function, n=1000).json()
    assert aimed["records"] == []
    every: list[dict[str, Any]] = []
    after: Any = None
    while True:
        page = _get(node, key, "/v1/audit/timeline", n=1000, **({"after": after} if after else {}))
        every += page.json()["records"]
        after = page.json()["next"]
        if after is None:
            break
    _names_only(json.dumps(every), tenants)
    assert any(tenants.a.function in json.dumps(r) for r in every)


def test_scoped_alert_reader_sees_only_its_functions_alerts(
    node: LiveNode, tenants: Tenants
) -> None:
    """GET /v1/alerts as A: the alert about A's function, not B's, nor a source's."""
    alerts = _get(node, tenants.a.key, "/v1/alerts", n=1000).json()
    assert {a["subject"] for a in alerts} == {f"function:{tenants.a.function}"}


def test_scoped_alert_reader_sees_only_its_functions_responses(
    node: LiveNode, tenants: Tenants
) -> None:
    """GET /v1/responses as A: neither B's quarantine nor a throttle on another subject."""
    with node.client() as c:
        r = c.post(f"/v1/functions/{tenants.b.function}/quarantine", json={"reason": "b only"})
        assert r.status_code == 201, r.text
        t = c.put("/v1/throttles/function:probe", json={"reason": "x", "duration_s": 30})
        assert t.is_success, t.text
    try:
        seen = _get(node, tenants.a.key, "/v1/responses").text
    finally:
        with node.client() as c:
            c.post(f"/v1/functions/{tenants.b.function}/release")
            c.delete("/v1/throttles/function:probe")
    _names_only(seen, tenants)
    assert "probe" not in seen


def test_scoped_quota_manager_lists_only_its_functions_quotas(
    node: LiveNode, tenants: Tenants
) -> None:
    """GET /v1/quotas as A: A's function's quota only."""
    quotas = _get(node, tenants.a.key, "/v1/quotas").json()
    assert [q["subject"] for q in quotas] == [f"function:{tenants.a.function}"]


def test_scoped_metrics_reader_cannot_scrape_the_whole_node(
    node: LiveNode, tenants: Tenants
) -> None:
    """/metrics holds every function's series: a role allowed metrics:read on its own
    functions only is refused (403), as the built-in metrics role is not."""
    with node.client(tenants.a.key, fresh_source()) as c:
        assert_problem(c.get("/metrics"), 403)
    metrics_key = node.create_key("sec-scraper", "metrics")["key"]
    with node.client(metrics_key, fresh_source()) as c:
        assert c.get("/metrics").status_code == 200


def test_scoped_key_manager_lists_only_keys_it_reaches(node: LiveNode, tenants: Tenants) -> None:
    """GET /v1/keys by a custom role's key:manage: the keys of its own role only (those
    it could revoke), not B's key, nor the admin's, nor their names and roles."""
    role = f"tenant-a-keys-{secrets.token_hex(3)}"
    statement = {
        "effect": "allow",
        "actions": ["key:manage", "function:invoke"],
        "resources": [f"{tenants.a.prefix}*"],
    }
    with node.client() as c:
        assert c.post("/v1/roles", json={"name": role, "statements": [statement]}).is_success
        every = c.get("/v1/keys").json()
    key = node.create_key("sec-tenant-a-keys", role)["key"]
    listed = _get(node, key, "/v1/keys").json()
    assert {k["role"] for k in listed} == {role}
    assert len(every) > len(listed) >= 1
    _names_only(json.dumps(listed), tenants)
    assert "tenant-b" not in json.dumps(listed)


def test_scoped_jwt_reads_only_its_functions_records(
    node: LiveNode, tenants: Tenants, tmp_path: Path
) -> None:
    """A JWT granted tenant A's role (an issuer allowed to grant it) reads as A's key does:
    A's records and alerts, nothing of B's, and no export."""
    signer = SigningKey.generate("tenant-a-1", "EdDSA")
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(signer)))
    issuer = f"https://tenant-a-{secrets.token_hex(3)}.example"
    run_cli(node.env(), "issuer", "add", f"ta{secrets.token_hex(3)}", "--issuer", issuer,
            "--jwks", str(keys), "--audience", "donjon-api",
            "--allowed-roles", tenants.a.role)  # fmt: skip
    token = signer.sign(claims(issuer, "donjon-api", roles=[tenants.a.role]))
    records = _get(node, token, "/v1/audit", n=10000).json()
    assert any(r["target"].startswith(f"{tenants.a.function}@") for r in records)
    _names_only(json.dumps(records), tenants)
    alerts = _get(node, token, "/v1/alerts").json()
    assert {a["subject"] for a in alerts} == {f"function:{tenants.a.function}"}
    with node.client(token, fresh_source()) as c:
        assert_problem(c.get("/v1/audit/export"), 403)


def test_auditor_key_limited_to_a_function_reads_only_its_records(
    node: LiveNode, tenants: Tenants
) -> None:
    """An `auditor` key limited to A's function (`functions`) reads as if its role named
    that function only: its records and alerts, not B's, no export, no /metrics."""
    key = node.create_key("sec-limited-auditor", "auditor", [tenants.a.function])["key"]
    records = _get(node, key, "/v1/audit", n=10000).json()
    assert any(r["target"].startswith(f"{tenants.a.function}@") for r in records)
    _names_only(json.dumps(records), tenants)
    alerts = _get(node, key, "/v1/alerts").json()
    assert {a["subject"] for a in alerts} == {f"function:{tenants.a.function}"}
    with node.client(key, fresh_source()) as c:
        assert_problem(c.get("/v1/audit/export"), 403)
        assert_problem(c.get("/metrics"), 403)


def test_auditor_denied_one_tenant_reads_none_of_its_records(
    node: LiveNode, tenants: Tenants
) -> None:
    """A role allowed audit:read on `*` but denied it on B's functions reads A's records and
    none of B's (the deny holds in a listing as it does on a request), nor the node-wide
    records (they could name anything), nor the export."""
    role = f"all-but-b-{secrets.token_hex(3)}"
    statements = [
        {"effect": "allow", "actions": ["audit:read"], "resources": ["*"]},
        {"effect": "deny", "actions": ["audit:read"], "resources": [f"{tenants.b.prefix}*"]},
    ]
    with node.client() as c:
        assert c.post("/v1/roles", json={"name": role, "statements": statements}).is_success
    key = node.create_key("sec-all-but-b", role)["key"]
    records = _get(node, key, "/v1/audit", n=10000).json()
    assert any(r["target"].startswith(f"{tenants.a.function}@") for r in records)
    _names_only(json.dumps(records), tenants)
    assert not any(r["action"].startswith(("key.", "role.")) for r in records)
    with node.client(key, fresh_source()) as c:
        assert_problem(c.get("/v1/audit/export"), 403)
