"""The CLI for roles and key lifetimes: role apply/ls/rm, key create --expires-in, key rotate,
last-used times in key ls."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from harness import LiveNode, run_cli


def _role_file(tmp: Path, name: str, body: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f"name: {name}\n{body}")
    return path


def test_role_apply_ls_rm(node: LiveNode, tmp_path: Path) -> None:
    """A role document goes from a file to a key's rights and away again."""
    env = node.env()
    name = f"cli-role-{secrets.token_hex(3)}"
    doc = _role_file(
        tmp_path,
        name,
        "statements:\n"
        '  - {effect: allow, actions: ["function:invoke"], resources: ["probe*"]}\n'
        '  - {effect: deny, actions: ["function:invoke"], resources: ["probe-warm"]}\n',
    )
    assert f"created role {name}" in run_cli(env, "role", "apply", str(doc)).stdout
    assert f"replaced role {name}" in run_cli(env, "role", "apply", str(doc)).stdout
    listing = run_cli(env, "role", "ls").stdout
    assert name in listing and "auditor" in listing and "probe-warm" in listing
    roles = {r["name"]: r for r in json.loads(run_cli(env, "role", "ls", "--json").stdout)}
    assert roles[name]["builtin"] is False and roles["admin"]["builtin"] is True
    key = json.loads(run_cli(env, "key", "create", "cli-r", "--role", name, "--json").stdout)
    assert node.invoke("probe", {"op": "echo"}, key=key["key"]).status_code == 200
    assert node.invoke("probe-warm", {"op": "echo"}, key=key["key"]).status_code == 403
    held = run_cli(env, "role", "rm", name, check=False)
    assert held.returncode == 1 and key["id"] in held.stderr
    forced = run_cli(env, "role", "rm", name, "--force").stdout
    assert f"removed role {name}" in forced and key["id"] in forced
    assert name not in run_cli(env, "role", "ls").stdout


def test_role_apply_refuses_bad_documents(node: LiveNode, tmp_path: Path) -> None:
    """Unknown actions and empty statement lists are clear errors; nothing is stored."""
    env = node.env()
    unknown = _role_file(
        tmp_path,
        "cli-bad",
        'statements:\n  - {effect: allow, actions: ["fn:go"], resources: ["*"]}\n',
    )
    done = run_cli(env, "role", "apply", str(unknown), check=False)
    assert done.returncode == 1 and "unknown action 'fn:go'" in done.stderr
    empty = _role_file(tmp_path, "cli-empty", "statements: []\n")
    done = run_cli(env, "role", "apply", str(empty), check=False)
    assert done.returncode == 1 and "at least one statement" in done.stderr
    builtin = run_cli(env, "role", "rm", "admin", check=False)
    assert builtin.returncode == 1 and "built-in" in builtin.stderr
    listing = run_cli(env, "role", "ls").stdout
    assert "cli-bad" not in listing and "cli-empty" not in listing


def test_key_expiry_rotate_and_last_used(node: LiveNode) -> None:
    """--expires-in shows in key ls; rotate prints a new key; LAST USED follows use."""
    env = node.env()
    bad = run_cli(
        env, "key", "create", "cli-x", "--role", "invoker", "--expires-in", "soon", check=False
    )
    assert bad.returncode != 0 and "not a duration" in bad.stderr
    key = json.loads(
        run_cli(
            env, "key", "create", "cli-exp", "--role", "invoker", "--expires-in", "30d", "--json"
        ).stdout
    )
    listed = {k["id"]: k for k in json.loads(run_cli(env, "key", "ls", "--json").stdout)}
    assert listed[key["id"]]["expires_at"] is not None
    assert listed[key["id"]]["last_used_at"] is None
    assert node.invoke("probe", {"op": "echo"}, key=key["key"]).status_code == 200
    listed = {k["id"]: k for k in json.loads(run_cli(env, "key", "ls", "--json").stdout)}
    assert listed[key["id"]]["last_used_at"] is not None
    assert "LAST" in run_cli(env, "key", "ls").stdout  # the LAST USED column (may wrap)
    rotated = json.loads(
        run_cli(env, "key", "rotate", key["id"], "--overlap", "1h", "--json").stdout
    )
    assert rotated["id"] == key["id"] and rotated["key"] != key["key"]
    for secret in (key["key"], rotated["key"]):
        assert node.invoke("probe", {"op": "echo"}, key=secret).status_code == 200
    text = run_cli(env, "key", "rotate", key["id"], "--overlap", "0s").stdout
    newest = text.strip().splitlines()[-1]
    assert node.invoke("probe", {"op": "echo"}, key=rotated["key"]).status_code == 401
    assert node.invoke("probe", {"op": "echo"}, key=newest).status_code == 200


def test_key_create_with_limits_and_key_ls_shows_them(node: LiveNode) -> None:
    """--rate/--burst/--concurrency are stored with the key and shown by key ls (LIMITS);
    a malformed rate is refused with a clear line and no key is made."""
    env = node.env()
    created = json.loads(
        run_cli(
            env,
            "key",
            "create",
            "cli-limited",
            "--role",
            "invoker",
            "--rate",
            "50/second",
            "--burst",
            "100",
            "--concurrency",
            "3",
            "--json",
        ).stdout
    )
    listed = {k["id"]: k for k in json.loads(run_cli(env, "key", "ls", "--json").stdout)}
    shown = listed[created["id"]]
    assert (shown["rate"], shown["burst"], shown["concurrency"]) == ("50/second", 100, 3)
    assert "rate=50/second burst=100 concurrency=3" in run_cli(env, "key", "ls").stdout
    before = len(listed)
    bad = run_cli(
        env, "key", "create", "cli-bad-rate", "--role", "invoker", "--rate", "fast", check=False
    )
    assert bad.returncode != 0 and "50/second" in bad.stderr
    assert len(json.loads(run_cli(env, "key", "ls", "--json").stdout)) == before
