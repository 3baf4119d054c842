"""A secret's lifecycle under attack: a leaked webhook secret, a rotation's fit check read
as an oracle, and a removal racing a deploy that grants the secret. Against a real node.

- A rotated webhook secret kept verifying deliveries for the node's grace (24 h by
  default), and nothing ended it sooner: an operator who knew the old value had leaked
  could not stop its holder from signing deliveries all day. `rotate` with `no_grace`
  (`donjon secret rotate NAME --no-grace`), the admin's or the secret's creator's, now
  drops every older version in the rotation's transaction.
- A rotation was refused as too large for a function's grants by the length of that
  function's other granted values: a role that may write one of them (and may not use
  the others) learned their length to the character, from the total the refusal named
  (a function it may read), else by trying values of growing size (201 or 422). The fit
  check now weighs only the functions whose other grants the caller may use, and no
  refusal (a rotation's, a call's) names a length.
- `secret rm` checked the deployed functions' grants while a deploy that granted the
  secret had checked it existed and was starting its sandbox: both succeeded, and the
  function was deployed granted a secret no longer in the vault. The deploy now checks
  again in its switch, and the removal's check and delete hold that switch.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from donjon.bundle import build_bundle
from donjon.vault.service import MAX_GRANTED
from harness import LiveNode, run_cli
from sec_support import assert_problem, audit_records
from triggers.webhook_signing import github_headers
from webhook_support import HANDLER, post_hook

#: The vault's largest value, in characters.
LONG = 64 * 1024 - 1


def _tag() -> str:
    """A fresh tag of letters only (hex in a manifest reads as a hard-coded value)."""
    return secrets.token_hex(3).translate(str.maketrans("0123456789", "ghijklmnop"))


def _deploy(node: LiveNode, root: Path, key: str | None = None) -> httpx.Response:
    _, archive = build_bundle(root)
    with node.client(key) as c:
        return c.post("/v1/functions", content=archive, params={"unsafe_skip_scan": "true"})


def _function(tmp: Path, name: str, manifest: str, code: str = HANDLER) -> Path:
    root = tmp / name
    root.mkdir()
    (root / "main.py").write_text(code)
    (root / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\n{manifest}")
    return root


def _role_key(node: LiveNode, name: str, resources: str) -> str:
    """A key of a new role that may write and use the secrets `resources` names."""
    statement = {
        "effect": "allow",
        "actions": ["secret:write", "secret:list", "secret:use"],
        "resources": [resources],
    }
    with node.client() as c:
        r = c.post("/v1/roles", json={"name": name, "statements": [statement]})
        assert r.status_code == 201, r.text
        r = c.post("/v1/keys", json={"name": name, "role": name})
        assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _signed(node: LiveNode, path: str, value: str) -> int:
    """The status of a fresh delivery to /hooks`path` signed with `value`."""
    body = json.dumps({"ref": secrets.token_hex(8)}).encode()
    return post_hook(node, path, body, github_headers(value, body)).status_code


def _rotate(node: LiveNode, name: str, body: dict[str, Any], key: str | None = None) -> Any:
    with node.client(key) as c:
        return c.post(f"/v1/secrets/{name}/versions", json=body)


def test_a_leaked_hook_secret_is_revoked_at_once_by_a_rotation_without_grace(
    node: LiveNode, tmp_path: Path
) -> None:
    """After a rotation the old value signs deliveries for the grace; a rotation with
    `no_grace` (the admin's or the secret's creator's, audited) ends it for every older
    value at once. Another writer of the secret may not."""
    tag = _tag()
    name, path = f"lk{tag}-hook", f"/lk{tag}"
    owner = _role_key(node, f"lk{tag}-owner", f"lk{tag}-*")
    writer = _role_key(node, f"lk{tag}-writer", f"lk{tag}-*")
    leaked, second = "gh-" + secrets.token_hex(16), "gh-" + secrets.token_hex(16)
    with node.client(owner) as c:
        assert c.post(f"/v1/secrets/{name}", json={"value": leaked}).status_code == 201
    hook = f"triggers:\n  - webhook: {{path: {path}, scheme: github, secret: {name}}}\n"
    assert _deploy(node, _function(tmp_path, f"lk{tag}-fn", hook)).status_code == 201
    assert _signed(node, path, leaked) == 202

    assert _rotate(node, name, {"value": second}, owner).status_code == 201
    assert _signed(node, path, leaked) == 202  # the grace: the leaked value still signs

    third = "gh-" + secrets.token_hex(16)
    refused = _rotate(node, name, {"value": third, "no_grace": True}, writer)
    assert "creator" in assert_problem(refused, 403)["detail"]
    (denial,) = audit_records(node, refused.headers["x-request-id"])
    assert (denial["action"], denial["outcome"]) == ("secret.rotate", "denied"), denial
    assert _signed(node, path, leaked) == 202  # refused: nothing changed
    with node.client() as c:
        (summary,) = [s for s in c.get("/v1/secrets").json() if s["name"] == name]
    assert summary["latest"] == 2, summary

    # The creator, through the CLI (`donjon secret rotate NAME --no-grace`).
    done = run_cli(
        node.env(owner), "secret", "rotate", name, "--no-grace", "--output", "json", input=third
    )
    assert json.loads(done.stdout) == {"name": name, "version": 3}
    assert _signed(node, path, leaked) == 401
    assert _signed(node, path, second) == 401
    assert _signed(node, path, third) == 202
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 200}).json()
    (record,) = [
        r for r in records if r["target"] == f"secret:{name}" and r["detail"].get("version") == 3
    ]
    assert (record["action"], record["outcome"]) == ("secret.rotate", "ok"), record
    assert (record["detail"]["no_grace"], record["detail"]["revoked"]) == (True, 2), record
    assert third not in json.dumps(records)
    with node.client() as c:
        (summary,) = [s for s in c.get("/v1/secrets").json() if s["name"] == name]
    assert (summary["latest"], summary["versions"]) == (3, 1), summary


def test_a_rotation_refused_as_too_large_tells_no_other_value_length(
    node: LiveNode, tmp_path: Path
) -> None:
    """A role that may write one of a function's granted secrets, and not use the others,
    learns nothing of their lengths from a rotation: before, the refusal named the total
    of the function's grants, so the others' length to the character."""
    tag = _tag()
    theirs = [f"ol{tag}-admin-{i}" for i in range(3)]
    hidden = f"ol{tag}-admin-hidden"
    own = f"ol{tag}-team-own"
    hidden_len = 20_000 + secrets.randbelow(1000)
    team = _role_key(node, f"ol{tag}-team", f"ol{tag}-team-*")
    with node.client() as c:
        for name in theirs:
            value = secrets.token_hex(LONG)[:LONG]
            assert c.post(f"/v1/secrets/{name}", json={"value": value}).status_code == 201
        value = secrets.token_hex(hidden_len)[:hidden_len]
        assert c.post(f"/v1/secrets/{hidden}", json={"value": value}).status_code == 201
    with node.client(team) as c:
        assert c.post(f"/v1/secrets/{own}", json={"value": "small"}).status_code == 201
    grants = ", ".join([*theirs, hidden, own])
    code = "def handler(event, context):\n    return {'n': len(context.secrets)}\n"
    fn = f"ol{tag}-fn"
    manifest = f"permissions: {{secrets: [{grants}]}}\n"
    assert _deploy(node, _function(tmp_path, fn, manifest, code)).status_code == 201
    assert node.invoke(fn, {}).status_code == 200
    others = LONG * len(theirs) + hidden_len

    lengths = (str(others + LONG), str(hidden_len))
    rotated = _rotate(node, own, {"value": "x" * LONG}, team)
    assert not any(n in rotated.json().get("detail", "") for n in lengths), rotated.text
    assert rotated.status_code == 201, rotated.text  # the team may not weigh the others
    body = assert_problem(node.invoke(fn, {}), 422)
    assert f"over the {MAX_GRANTED}" in body["detail"]
    assert not any(n in body["detail"] for n in lengths), body
    # The admin, who may use every grant, is refused the same rotation, told no length.
    refused = _rotate(node, own, {"value": "y" * LONG})
    body = assert_problem(refused, 422)
    assert fn in body["detail"] and not any(n in body["detail"] for n in lengths), body
    assert _rotate(node, own, {"value": "small"}).status_code == 201
    assert node.invoke(fn, {}).status_code == 200


#: A handler whose import (run in the new version's sandbox before its switch) is slow.
_SLOW_IMPORT = "import time\ntime.sleep(3)\ndef handler(event, context):\n    return {}\n"


def _race(node: LiveNode, root: Path, secret: str, delay_s: float) -> tuple[Any, Any]:
    """Deploy `root` and, `delay_s` into it, remove `secret`; both answers."""
    answers: dict[str, Any] = {}

    def deploy() -> None:
        answers["deploy"] = _deploy(node, root)

    thread = threading.Thread(target=deploy)
    thread.start()
    time.sleep(delay_s)
    with node.client() as c:
        answers["rm"] = c.delete(f"/v1/secrets/{secret}")
    thread.join(120)
    return answers["deploy"], answers["rm"]


def test_a_secret_removed_during_a_deploy_granting_it_is_never_left_granted(
    node: LiveNode, tmp_path: Path
) -> None:
    """`secret rm` while a deploy granting the secret is between its grant check and its
    switch (its sandbox importing the handler): the deploy is refused, or the removal is;
    never both made, a function granted a secret the vault lacks (before, both were)."""
    tag = _tag()
    caught = 0
    for attempt, delay_s in enumerate((1.0, 1.5, 2.0, 0.5)):
        secret, fn = f"rr{tag}-{attempt}", f"rr{tag}-fn-{attempt}"
        with node.client() as c:
            assert c.post(f"/v1/secrets/{secret}", json={"value": "v"}).status_code == 201
        manifest = f"permissions: {{secrets: [{secret}]}}\n"
        root = _function(tmp_path, fn, manifest, _SLOW_IMPORT)
        deployed, removed = _race(node, root, secret, delay_s)
        assert not (deployed.status_code == 201 and removed.status_code == 204), (
            f"both made: {fn} is deployed granted {secret}, which is gone"
        )
        if removed.status_code == 204:
            assert deployed.status_code == 422, deployed.text
            caught += "removed while this deploy ran" in deployed.json()["detail"]
            with node.client() as c:
                assert c.get(f"/v1/functions/{fn}").status_code == 404
        else:
            assert deployed.status_code == 201, deployed.text
            assert_problem(removed, 409)
            assert node.invoke(fn, {}).status_code == 200
        if caught:
            break
    assert caught, "no removal landed between the deploy's check and its switch"
