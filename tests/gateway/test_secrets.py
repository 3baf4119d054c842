"""The vault through the API and the CLI: write-only values, grants, rotation, rekey."""

from __future__ import annotations

import secrets
import shlex
import sys
from pathlib import Path

import pytest

from donjon.store import SecretStore, connect
from harness import LiveNode, run_cli, start_node

HANDLER = """
def handler(event, context):
    return {"secrets": dict(context.secrets)}
"""


def _write(root: Path, name: str, grants: list[str], isolation: str = "invocation") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nisolation: {isolation}\n"
        f"permissions: {{secrets: [{', '.join(grants)}]}}\n"
    )
    (root / "main.py").write_text(HANDLER)
    return root


def _set(node: LiveNode, name: str, value: str, key: str | None = None) -> int:
    with node.client(key) as c:
        return c.post(f"/v1/secrets/{name}", json={"value": value}).status_code


def test_no_route_returns_a_value(node: LiveNode) -> None:
    """Set, rotate and list answer names and versions; the value is in no response."""
    value = "vault-api-" + secrets.token_hex(12)
    with node.client() as c:
        r = c.post("/v1/secrets/api-one", json={"value": value})
        assert r.status_code == 201 and r.json() == {"name": "api-one", "version": 1}
        r2 = c.post("/v1/secrets/api-one/versions", json={"value": value + "-2"})
        assert r2.status_code == 201 and r2.json()["version"] == 2
        listed = c.get("/v1/secrets")
        assert listed.status_code == 200
        row = next(s for s in listed.json() if s["name"] == "api-one")
        assert row["latest"] == 2 and row["versions"] == 2 and row["granted_to"] == []
        audit = c.get("/v1/audit", params={"n": 50})
        for response in (r, r2, listed, audit):
            assert value not in response.text
        assert c.get("/v1/secrets/api-one").status_code in (404, 405)
        assert c.post("/v1/secrets/api-one", json={"value": "again"}).status_code == 409
        assert c.delete("/v1/secrets/api-one").status_code == 204
        assert c.delete("/v1/secrets/api-one").status_code == 404
    actions = [r["action"] for r in audit.json()]
    assert "secret.set" in actions and "secret.rotate" in actions


def test_bad_names_and_values_are_refused(node: LiveNode) -> None:
    """Names that are not names, empty, oversized and non-text values: 4xx, nothing stored."""
    with node.client() as c:
        for name in ("Upper", "1abc", "a.b", "x" * 64):
            assert c.post(f"/v1/secrets/{name}", json={"value": "v"}).status_code == 422
        for body in ({"value": ""}, {"value": 5}, {"value": "x" * 70_000}, {}, {"v": "x"}):
            assert c.post("/v1/secrets/bad-values", json=body).status_code in (400, 413, 422)
        names = [s["name"] for s in c.get("/v1/secrets").json()]
    assert "bad-values" not in names


def test_invoker_cannot_touch_the_vault(node: LiveNode) -> None:
    """An invoker key may not list, set or rekey; a developer may set and list, not rekey."""
    invoker = node.create_key("vault-invoker", "invoker")["key"]
    developer = node.create_key("vault-dev", "developer")["key"]
    assert _set(node, "by-invoker", "x", invoker) == 403
    with node.client(invoker) as c:
        assert c.get("/v1/secrets").status_code == 403
    assert _set(node, "by-developer", "x", developer) == 201
    with node.client(developer) as c:
        assert c.post("/v1/vault/rekey").status_code == 403
        assert c.delete("/v1/secrets/by-developer").status_code == 204


def test_deploy_granting_a_missing_secret_is_refused(node: LiveNode, tmp_path: Path) -> None:
    """A grant of a secret that does not exist fails the deploy, naming it; nothing deployed."""
    from donjon.bundle import build_bundle

    _, archive = build_bundle(_write(tmp_path / "m", "grants-missing", ["no-such-secret"]))
    with node.client() as c:
        r = c.post("/v1/functions", content=archive)
        assert r.status_code == 422
        assert "no-such-secret" in r.json()["detail"]
        assert c.get("/v1/functions/grants-missing").status_code == 404


def test_context_holds_exactly_the_granted_newest_secrets(node: LiveNode, tmp_path: Path) -> None:
    """Both isolation modes get exactly their grants, and a rotation on their next call."""
    assert _set(node, "ctx-granted", "granted-v1") == 201
    assert _set(node, "ctx-other", "never-delivered") == 201
    for isolation in ("invocation", "warm"):
        name = f"ctx-{isolation}"
        node.deploy(_write(tmp_path / name, name, ["ctx-granted"], isolation))
    with node.client() as c:
        for isolation in ("invocation", "warm"):
            body = node.invoke(f"ctx-{isolation}", {}).json()
            assert body == {"secrets": {"ctx-granted": "granted-v1"}}
        assert c.post("/v1/secrets/ctx-granted/versions", json={"value": "granted-v2"}).is_success
        for isolation in ("invocation", "warm"):
            body = node.invoke(f"ctx-{isolation}", {}).json()
            assert body == {"secrets": {"ctx-granted": "granted-v2"}}
        row = next(s for s in c.get("/v1/secrets").json() if s["name"] == "ctx-granted")
        assert row["granted_to"] == ["ctx-invocation", "ctx-warm"]
        # Removing a secret a deployed function is granted is refused.
        r = c.delete("/v1/secrets/ctx-granted")
        assert r.status_code == 409 and "ctx-invocation" in r.json()["detail"]


def test_rekey_while_serving(node: LiveNode, tmp_path: Path) -> None:
    """`vault rekey` re-wraps every data key; calls before and after get the same values."""
    assert _set(node, "rekey-s", "rekey-value") == 201
    node.deploy(_write(tmp_path / "rk", "rekey-fn", ["rekey-s"], "warm"))
    assert node.invoke("rekey-fn", {}).json() == {"secrets": {"rekey-s": "rekey-value"}}
    done = run_cli(node.env(), "vault", "rekey")
    assert "re-wrapped" in done.stdout
    assert (node.data_dir / "vault.key").exists()
    assert node.invoke("rekey-fn", {}).json() == {"secrets": {"rekey-s": "rekey-value"}}
    with node.client() as c:
        assert c.post("/v1/secrets/rekey-s/versions", json={"value": "after"}).is_success
        audit = c.get("/v1/audit", params={"n": 100}).json()
    assert node.invoke("rekey-fn", {}).json() == {"secrets": {"rekey-s": "after"}}
    assert any(r["action"] == "vault.rekey" and r["outcome"] == "ok" for r in audit)


def test_cli_secret_commands(node: LiveNode, tmp_path: Path) -> None:
    """set (stdin, --from-file), ls, rotate, rm: the value never printed, never in argv."""
    value = "cli-value-" + secrets.token_hex(8)
    env = node.env()
    out = run_cli(env, "secret", "set", "cli-secret", input=value + "\n").stdout
    assert "version 1" in out
    (tmp_path / "v").write_text(value + "-2")
    out += run_cli(env, "secret", "rotate", "cli-secret", "--from-file", str(tmp_path / "v")).stdout
    listed = run_cli(env, "secret", "ls")
    assert "cli-secret" in listed.stdout
    out += listed.stdout + run_cli(env, "secret", "ls", "--json").stdout
    out += run_cli(env, "secret", "rm", "cli-secret").stdout
    assert value not in out
    bad = run_cli(env, "secret", "set", "Bad Name", input="x", check=False)
    assert bad.returncode != 0 and "not a secret name" in bad.stderr
    empty = run_cli(env, "secret", "set", "cli-empty", input="", check=False)
    assert empty.returncode != 0 and "empty" in empty.stderr


def test_node_with_a_key_provider(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With DONJON_KMS_COMMAND, data keys are wrapped by the program; calls get the value."""
    provider = Path(__file__).parent.parent / "vault" / "kms_provider.py"
    kms_key = tmp_path_factory.mktemp("kms") / "kms.key"
    command = shlex.join([sys.executable, str(provider), str(kms_key)])
    live = start_node(tmp_path_factory.mktemp("kms-node"), {"DONJON_KMS_COMMAND": command})
    try:
        assert _set(live, "kms-s", "through-the-kms") == 201
        live.deploy(_write(tmp_path_factory.mktemp("kms-fn"), "kms-fn", ["kms-s"]))
        assert live.invoke("kms-fn", {}).json() == {"secrets": {"kms-s": "through-the-kms"}}
        with live.client() as c:
            done = c.post("/v1/vault/rekey")
        assert done.status_code == 200 and done.json() == {"rewrapped": 1, "kek_id": "kms"}
        assert live.invoke("kms-fn", {}).json() == {"secrets": {"kms-s": "through-the-kms"}}
        engine = connect(f"sqlite:///{live.data_dir / 'donjon.db'}")
        try:
            rows = SecretStore(engine).all_versions()
        finally:
            engine.dispose()
        assert [r.kek_id[:9] for r in rows] == ["kms:test-"]
        assert kms_key.exists() and not (live.data_dir / "vault.key").exists()
    finally:
        live.stop()


def test_a_secret_a_trigger_names_is_listed_with_it_and_not_removed(
    node: LiveNode, tmp_path: Path
) -> None:
    """A webhook's secret is the platform's (it verifies deliveries with it), not the
    function's: it is listed as used by the function, and removing it is refused while the
    function is deployed, as for a granted secret (helper-123's review: it was removed,
    and every delivery after got 503)."""
    assert _set(node, "hook-used", "whsec_" + "A" * 32) == 201
    root = tmp_path / "hooked"
    root.mkdir()
    (root / "donjon.yaml").write_text(
        "name: hooked\nhandler: main.handler\n"
        "triggers:\n  - webhook: {path: /hooked, scheme: standard, secret: hook-used}\n"
    )
    (root / "main.py").write_text(HANDLER)
    node.deploy(root)
    with node.client() as c:
        row = next(s for s in c.get("/v1/secrets").json() if s["name"] == "hook-used")
        assert row["granted_to"] == ["hooked"]
        r = c.delete("/v1/secrets/hook-used")
        assert r.status_code == 409 and "hooked" in r.json()["detail"], r.text
        assert c.delete("/v1/functions/hooked").status_code in (200, 204)
        assert c.delete("/v1/secrets/hook-used").status_code == 204
