"""The CLI against a live node: deploy, invoke, ls, logs, rm, keys, audit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness import EXAMPLES, LiveNode, run_cli


def _copy(src: Path, dest: Path, name: str) -> Path:
    shutil.copytree(src, dest)
    text = (dest / "donjon.yaml").read_text()
    (dest / "donjon.yaml").write_text(text.replace(f"name: {src.name}", f"name: {name}", 1))
    return dest


def test_deploy_invoke_logs_rm(node: LiveNode, tmp_path: Path) -> None:
    """A bundle goes from directory to answering calls and away again, all from the CLI."""
    env = node.env()
    fn = _copy(EXAMPLES / "hello", tmp_path / "hello", "cli-hello")
    out = run_cli(env, "deploy", str(fn), "--json").stdout
    deployed = json.loads(out)
    assert deployed["name"] == "cli-hello" and deployed["version"] >= 1
    assert len(deployed["digest"]) == 64
    assert "cli-hello" in run_cli(env, "ls").stdout
    result = run_cli(env, "invoke", "cli-hello", "--data", '{"name": "cli"}').stdout
    assert json.loads(result)["message"] == "hello, cli"
    piped = run_cli(env, "invoke", "cli-hello", "--data", "-", input='{"name": "pipe"}').stdout
    assert json.loads(piped)["message"] == "hello, pipe"
    # The same bundle again is a no-op: no new version (issue 11).
    again = json.loads(run_cli(env, "deploy", str(fn), "--json").stdout)
    assert again["version"] == deployed["version"] and again["unchanged"] is True
    assert again["digest"] == deployed["digest"]
    run_cli(env, "rm", "cli-hello")
    assert "cli-hello" not in run_cli(env, "ls").stdout
    gone = run_cli(env, "invoke", "cli-hello", check=False)
    assert gone.returncode == 1 and "404" in gone.stderr


def test_bad_manifest_reports_every_field_and_stores_nothing(
    node: LiveNode, tmp_path: Path
) -> None:
    """A malformed donjon.yaml is refused with field paths; no version is created."""
    fn = tmp_path / "bad"
    fn.mkdir()
    (fn / "main.py").write_text("def handler(e, c):\n    return 1\n")
    (fn / "donjon.yaml").write_text(
        "name: bad-fn\nhandler: main.handler\nmemory_mb: 1\npermissions: {network: yes}\n"
    )
    done = run_cli(node.env(), "deploy", str(fn), check=False)
    assert done.returncode == 1
    assert "memory_mb" in done.stderr and "permissions.network" in done.stderr
    assert "bad-fn" not in run_cli(node.env(), "ls").stdout


def test_server_rejects_bad_manifest_sent_directly(node: LiveNode) -> None:
    """The server validates the manifest itself: a hand-made archive is checked too."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (
            ("donjon.yaml", b"name: x\nhandler: main.handler\nbogus: 1\n"),
            ("main.py", b"def handler(e, c):\n    return 1\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with node.client() as c:
        r = c.post("/v1/functions", content=buf.getvalue())
        assert r.status_code == 422
        assert any(p.startswith("bogus") for p in r.json()["problems"])
        assert c.get("/v1/functions/x").status_code == 404


def test_key_lifecycle_from_the_cli(node: LiveNode) -> None:
    """key create prints the key once; ls never shows it; revoke stops it on the next call."""
    env = node.env()
    created = json.loads(
        run_cli(
            env, "key", "create", "ci", "--role", "invoker", "--functions", "probe", "--json"
        ).stdout
    )
    assert set(created) == {"id", "key"}
    listing = run_cli(env, "key", "ls", "--json").stdout
    assert created["id"] in listing and created["key"] not in listing
    assert node.invoke("probe", {"op": "echo"}, key=created["key"]).status_code == 200
    run_cli(env, "key", "revoke", created["id"])
    assert node.invoke("probe", {"op": "echo"}, key=created["key"]).status_code == 401


def test_an_unrestricted_invoker_key_shows_its_wildcard(node: LiveNode) -> None:
    """An invoker key made without --functions says `functions: *`, at creation and in ls."""
    env = {**node.env(), "COLUMNS": "500"}  # tables wide enough that rich cuts no cell short
    out = run_cli(env, "key", "create", "any-fn", "--role", "invoker").stdout
    assert "functions: *" in out.splitlines()[0]
    key_id = out.split()[2]
    listing = json.loads(run_cli(env, "key", "ls", "--json").stdout)
    assert next(k for k in listing if k["id"] == key_id)["functions"] == ["*"]
    table = run_cli(env, "key", "ls").stdout
    row = next(line for line in table.splitlines() if key_id in line)
    assert " * " in f"{row} "
    restricted = run_cli(
        env, "key", "create", "one-fn", "--role", "invoker", "--functions", "probe"
    ).stdout
    assert "functions: probe" in restricted.splitlines()[0]


def test_a_wildcard_or_bad_name_in_functions_is_refused(node: LiveNode) -> None:
    """`*` is not a function name: the unrestricted key is made by omitting --functions."""
    done = run_cli(
        node.env(), "key", "create", "star", "--role", "invoker", "--functions", "*", check=False
    )
    assert done.returncode == 1 and "400" in done.stderr


def test_developer_cannot_manage_keys(node: LiveNode) -> None:
    """A developer key deploys but cannot create keys."""
    dev = node.create_key("dev", "developer")["key"]
    done = run_cli(node.env(dev), "key", "create", "x", "--role", "admin", check=False)
    assert done.returncode == 1 and "403" in done.stderr


def test_audit_tail_shows_invocations_without_payloads(node: LiveNode) -> None:
    """Invocations are audited with who, what, outcome and duration, never the event."""
    r = node.invoke("probe", {"op": "echo", "marker": "payload-must-not-be-logged"})
    rid = r.headers["x-request-id"]
    records = json.loads(run_cli(node.env(), "audit", "tail", "-n", "200", "--json").stdout)
    mine = [rec for rec in records if rec["detail"].get("request_id") == rid]
    assert len(mine) == 1
    assert mine[0]["action"] == "function.invoke" and mine[0]["outcome"] == "ok"
    assert "duration_ms" in mine[0]["detail"]
    assert "payload-must-not-be-logged" not in json.dumps(records)
    assert run_cli(node.env(), "audit", "verify").returncode == 0


def test_invoke_rejects_bad_json_locally(node: LiveNode) -> None:
    """--data that is not JSON is refused before any request."""
    done = run_cli(node.env(), "invoke", "probe", "--data", "{nope", check=False)
    assert done.returncode != 0 and "not valid JSON" in done.stderr


def test_any_key_may_revoke_itself_but_not_others(node: LiveNode) -> None:
    """Self-revocation needs no admin; revoking someone else's key does."""
    mine = node.create_key("self-revoker", "invoker")
    other = node.create_key("bystander", "invoker")
    with node.client(mine["key"]) as c:
        assert c.delete(f"/v1/keys/{other['id']}").status_code == 403
        assert c.delete(f"/v1/keys/{mine['id']}").status_code == 204
    assert node.invoke("probe", {"op": "echo"}, key=mine["key"]).status_code == 401
    assert node.invoke("probe", {"op": "echo"}, key=other["key"]).status_code == 200
