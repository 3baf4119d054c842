"""Secrets as resources: a role scoped to some secrets neither reaches another team's
secret through the vault API nor through a function it deploys (`secret:use`).

Before, `secret:write` was decided on no secret at all, and a deploy granted any secret in
the vault: a role allowed the vault on `team-a-*` rotated an admin's secret, and a
function it deployed read the admin's value (or its webhook trigger verified deliveries
with another owner's signing secret). Now the secret routes are decided on the name, and
a deploy needs `secret:use` on each secret it grants or its triggers name, as it needs
`function:invoke` on each function it grants (docs/security.md, "Roles and actions").
The built-in developer keeps `secret:use` on `*`: the vault is shared among a team's
developers unless an admin gives them roles that say otherwise.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx

from donjon.bundle import build_bundle
from harness import LiveNode
from sec_support import assert_problem, audit_records


def _tag() -> str:
    """A fresh tag of letters only (a hex-looking name in a manifest reads as a hard-coded
    value to the deploy gate's secrets scan)."""
    return secrets.token_hex(3).translate(str.maketrans("0123456789", "ghijklmnop"))


def _role(node: LiveNode, name: str, *statements: dict[str, Any]) -> str:
    """A key of a new custom role `name` made of `statements`."""
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": name, "statements": list(statements)})
        assert r.status_code == 201, r.text
        r = c.post("/v1/keys", json={"name": name, "role": name})
        assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _allow(actions: list[str], *resources: str) -> dict[str, Any]:
    return {"effect": "allow", "actions": actions, "resources": list(resources)}


def _set_secret(node: LiveNode, name: str, key: str | None = None) -> httpx.Response:
    with node.client(key) as c:
        return c.post(f"/v1/secrets/{name}", json={"value": secrets.token_hex(8)})


def _deploy(node: LiveNode, key: str, directory: Path) -> httpx.Response:
    _, archive = build_bundle(directory)
    with node.client(key) as c:
        return c.post(
            "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
        )


def _bundle(tmp: Path, name: str, extra: str) -> Path:
    directory = tmp / name
    directory.mkdir()
    (directory / "main.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
    (directory / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nisolation: warm\n{extra}"
    )
    return directory


def _rejected(node: LiveNode, r: httpx.Response, secret: str) -> None:
    body = assert_problem(r, 403)
    assert f"may not grant the secret {secret!r}" in body["detail"]
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "function.deploy" and record["outcome"] == "rejected"
    assert record["detail"]["error"] == "SecretGrantForbidden"


def test_a_team_scoped_role_reaches_its_own_secrets_only(node: LiveNode, tmp_path: Path) -> None:
    tag = _tag()
    team, theirs = f"sa{tag}-", f"sb{tag}-token"
    key = _role(
        node,
        f"team-{tag}",
        _allow(["function:deploy", "function:read", "function:invoke"], f"{team}*"),
        _allow(["secret:write", "secret:list", "secret:use"], f"{team}*"),
    )
    assert _set_secret(node, theirs).status_code == 201  # the admin's
    # The vault API, decided on the secret's name.
    assert _set_secret(node, f"{team}token", key).status_code == 201
    with node.client(key) as c:
        rotated = c.post(f"/v1/secrets/{theirs}/versions", json={"value": "attacker-chosen"})
        removed = c.delete(f"/v1/secrets/{theirs}")
    assert_problem(rotated, 403)
    assert_problem(removed, 403)
    (denial,) = audit_records(node, rotated.headers["x-request-id"])
    assert denial["action"] == "authz.denied" and denial["detail"]["permission"] == "secret:write"
    assert f"secret:write on {theirs} denied" in denial["detail"]["reason"]
    with node.client(key) as c:
        listed = [s["name"] for s in c.get("/v1/secrets").json()]
    assert listed == [f"{team}token"]  # not the admin's, nor any other team's
    # A deploy grants only what its deployer may use.
    granted = _bundle(tmp_path, f"{team}fn", f"permissions:\n  secrets: [{theirs}]\n")
    _rejected(node, _deploy(node, key, granted), theirs)
    hook = _bundle(
        tmp_path,
        f"{team}hook",
        f"triggers:\n  - webhook: {{path: /{team}hook, scheme: github, secret: {theirs}}}\n",
    )
    _rejected(node, _deploy(node, key, hook), theirs)
    own = _bundle(tmp_path, f"{team}own", f"permissions:\n  secrets: [{team}token]\n")
    assert _deploy(node, key, own).status_code == 201
    answer = node.invoke(f"{team}own", {}, key=key)
    assert answer.status_code == 200, answer.text


def test_a_role_written_before_secret_use_grants_no_secret(node: LiveNode, tmp_path: Path) -> None:
    """Deny by default: a custom role that may deploy and write secrets, but names no
    `secret:use`, deploys functions that are granted no secret."""
    tag = _tag()
    key = _role(
        node,
        f"old-{tag}",
        _allow(["function:deploy"], "*"),
        _allow(["secret:write"], "*"),
    )
    assert _set_secret(node, f"so{tag}-token", key).status_code == 201
    plain = _bundle(tmp_path, f"so{tag}-plain", "")
    assert _deploy(node, key, plain).status_code == 201
    granted = _bundle(tmp_path, f"so{tag}-fn", f"permissions:\n  secrets: [so{tag}-token]\n")
    _rejected(node, _deploy(node, key, granted), f"so{tag}-token")


def test_the_builtin_developer_still_uses_the_teams_vault(node: LiveNode, tmp_path: Path) -> None:
    tag = _tag()
    with node.client() as c:
        r = c.post("/v1/keys", json={"name": f"dev-{tag}", "role": "developer"})
    key = str(r.json()["key"])
    assert _set_secret(node, f"sd{tag}-token").status_code == 201  # the admin's
    granted = _bundle(tmp_path, f"sd{tag}-fn", f"permissions:\n  secrets: [sd{tag}-token]\n")
    assert _deploy(node, key, granted).status_code == 201


def test_a_secrets_users_are_named_only_to_who_may_read_them(
    node: LiveNode, tmp_path: Path
) -> None:
    """The listing named every deployed function using a secret, another owner's included,
    to a role that may read none of them; a refused removal named them too. Now each names
    the functions the caller may read, and counts the others."""
    tag = _tag()
    team = f"sc{tag}-"
    key = _role(
        node,
        f"team-{tag}",
        _allow(["function:deploy", "function:read"], f"{team}*"),
        _allow(["secret:write", "secret:list", "secret:use"], f"{team}*"),
    )
    shared = f"{team}token"
    assert _set_secret(node, shared, key).status_code == 201
    own = _bundle(tmp_path, f"{team}own", f"permissions:\n  secrets: [{shared}]\n")
    assert _deploy(node, key, own).status_code == 201
    hidden = _bundle(tmp_path, f"hidden-{tag}", f"permissions:\n  secrets: [{shared}]\n")
    assert _deploy(node, node.admin_key, hidden).status_code == 201
    with node.client(key) as c:
        (row,) = [s for s in c.get("/v1/secrets").json() if s["name"] == shared]
        refused = c.delete(f"/v1/secrets/{shared}")
    assert row["granted_to"] == [f"{team}own"]
    body = assert_problem(refused, 409)
    assert f"hidden-{tag}" not in body["detail"] and "1 other" in body["detail"]
    with node.client() as c:
        (row,) = [s for s in c.get("/v1/secrets").json() if s["name"] == shared]
    assert row["granted_to"] == sorted([f"{team}own", f"hidden-{tag}"])
