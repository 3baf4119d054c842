"""A function's name reused by another owner (gateway/history.py), attacked on a real node.

Developer A deploys `reused`, calls it (it prints a marker of A's) and removes it;
developer B deploys a function of the same name. Before, B's `*` then reached the
name's whole history: `donjon logs reused` showed B what A's function printed, and
`?version=1` its SBOM and provenance; and A, having removed its own function, got 403
for its logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from async_support import fail_once_then_remove, invoke_async, wait_for
from harness import LiveNode, run_cli

NAME = "reused"


def _deploy(node: LiveNode, key: str, tmp: Path, marker: str) -> None:
    fn = tmp / marker
    fn.mkdir(mode=0o755)
    (fn / "donjon.yaml").write_text(f"name: {NAME}\nhandler: main.handler\nmemory_mb: 64\n")
    (fn / "main.py").write_text(
        f"def handler(event, context):\n    print({marker!r})\n    return {marker!r}\n"
    )
    run_cli(node.env(key), "deploy", str(fn))


def _outputs(node: LiveNode, key: str | None) -> tuple[int, str]:
    with node.client(key) as c:
        r = c.get(f"/v1/functions/{NAME}/logs")
    return r.status_code, r.text


@pytest.fixture(scope="module")
def owners(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A's function called and removed, then B's under the same name, called."""
    tmp = tmp_path_factory.mktemp("reuse")
    a = node.create_key("reuse-a", "developer")["key"]
    b = node.create_key("reuse-b", "developer")["key"]
    _deploy(node, a, tmp, "printed-by-a")
    with node.client(a) as c:
        assert c.post(f"/v1/functions/{NAME}/invoke", json={}).status_code == 200
        assert c.delete(f"/v1/functions/{NAME}").status_code == 204
    removed = _outputs(node, a)
    _deploy(node, b, tmp, "printed-by-b")
    with node.client(b) as c:
        assert c.post(f"/v1/functions/{NAME}/invoke", json={}).status_code == 200
    return {"a": a, "b": b, "removed": removed}


def test_the_new_owner_does_not_read_what_the_earlier_function_printed(
    node: LiveNode, owners: dict[str, Any]
) -> None:
    status, text = _outputs(node, owners["b"])
    assert status == 200, text
    assert "printed-by-b" in text
    assert "printed-by-a" not in text


def test_the_earlier_owner_reads_its_own_removed_functions_logs_and_no_more(
    node: LiveNode, owners: dict[str, Any]
) -> None:
    status, text = owners["removed"]  # read once it was removed, before B deployed
    assert status == 200, text
    assert "printed-by-a" in text
    status, text = _outputs(node, owners["a"])
    assert status == 200, text
    assert "printed-by-a" in text
    assert "printed-by-b" not in text


def test_the_admin_and_a_role_that_names_the_function_read_every_version(
    node: LiveNode, owners: dict[str, Any]
) -> None:
    doc = {
        "name": "reuse-reader",
        "statements": [{"effect": "allow", "actions": ["function:logs"], "resources": [NAME]}],
    }
    with node.client() as c:
        assert c.post("/v1/roles", json=doc).status_code == 201
    reader = node.create_key("reuse-named", "reuse-reader")["key"]
    for key in (None, reader):
        status, text = _outputs(node, key)
        assert status == 200, text
        assert "printed-by-a" in text and "printed-by-b" in text


def test_anyone_else_is_refused_and_the_refusal_audited(
    node: LiveNode, owners: dict[str, Any]
) -> None:
    c_key = node.create_key("reuse-c", "developer")
    status, text = _outputs(node, c_key["key"])
    assert status == 403, text
    with node.client() as c:
        audit = c.get("/v1/audit", params={"n": 200}).json()
    denied = [
        r for r in audit if r["action"] == "authz.denied" and r["actor"] == f"key:{c_key['id']}"
    ]
    assert denied and "logs" in denied[-1]["detail"]["reason"], denied


def test_an_earlier_owners_versions_sbom_and_provenance_are_not_the_new_owners(
    node: LiveNode, owners: dict[str, Any]
) -> None:
    with node.client() as c:
        versions = {
            v: c.get(f"/v1/functions/{NAME}/sbom", params={"version": v}).status_code
            for v in ("1", "2")
        }
        assert versions == {"1": 200, "2": 200}  # the admin: both
    with node.client(owners["b"]) as c:
        assert c.get(f"/v1/functions/{NAME}/sbom").status_code == 200  # its own, current
        for path in ("sbom", "provenance"):
            refused = c.get(f"/v1/functions/{NAME}/{path}", params={"version": "1"})
            assert refused.status_code == 404, refused.text
            assert c.get(f"/v1/functions/{NAME}/{path}", params={"version": "2"}).status_code == 200
        missing = c.get(f"/v1/functions/{NAME}/sbom", params={"version": "77"}).json()
        # Told apart from a version that does not exist by nothing but its number.
        told = refused.json()
        assert told["detail"] == missing["detail"].replace("77", "1")
        assert sorted(told) == sorted(missing)
        assert [told[k] for k in ("type", "title", "status")] == [
            missing[k] for k in ("type", "title", "status")
        ]
    with node.client() as c:
        audit = c.get("/v1/audit", params={"n": 200}).json()
    assert any(
        r["action"] == "authz.denied"
        and "another owner's version" in str(r["detail"].get("reason", ""))
        for r in audit
    )
    with node.client(owners["a"]) as c:
        assert c.get(f"/v1/functions/{NAME}/sbom", params={"version": "1"}).status_code == 200
        assert c.get(f"/v1/functions/{NAME}/sbom", params={"version": "2"}).status_code == 404


def test_an_event_queued_for_a_removed_function_never_reaches_the_names_new_function(
    node: LiveNode, tmp_path: Path
) -> None:
    """A's function fails its first attempt at an async event (its retry 10 s later, longer
    than a removal and a deploy take); A removes it and B deploys the name meanwhile.
    Before, the retry ran B's code with A's caller's event. Now the event is
    dead-lettered (404) unrun; an admin's redrive is a choice, and goes to the function
    deployed then."""
    name = "reused-async"
    a = node.create_key("reuse-async-a", "developer")["key"]
    b = node.create_key("reuse-async-b", "developer")["key"]
    fa, fb = tmp_path / "a", tmp_path / "b"
    for d, body, extra in (
        (fa, "    raise RuntimeError('not yet')\n", "retry: {attempts: 3, backoff_s: 10}\n"),
        (fb, "    print('b got', event)\n    return event\n", ""),
    ):
        d.mkdir(mode=0o755)
        (d / "donjon.yaml").write_text(
            f"name: {name}\nhandler: main.handler\nmemory_mb: 64\n{extra}"
        )
        (d / "main.py").write_text(f"def handler(event, context):\n{body}")
    run_cli(node.env(a), "deploy", str(fa))
    invocation_id = fail_once_then_remove(node, name, {"card": "4111-of-a-caller"}, a)
    run_cli(node.env(b), "deploy", str(fb))
    dead = wait_for(node, invocation_id, ("dead", "succeeded"))
    assert dead["status"] == "dead", dead
    assert "was removed" in dead["error"]["message"], dead
    with node.client(b) as c:
        assert "4111-of-a-caller" not in c.get(f"/v1/functions/{name}/logs").text
    with node.client() as c:  # an admin's choice: redriven to the function deployed now
        assert c.post(f"/v1/dlq/{invocation_id}/redrive").status_code == 200
    assert wait_for(node, invocation_id)["status"] == "succeeded"


def _pair(node: LiveNode, tag: str) -> tuple[str, str]:
    return (
        node.create_key(f"reuse-{tag}-a", "developer")["key"],
        node.create_key(f"reuse-{tag}-b", "developer")["key"],
    )


def _bundle(tmp: Path, name: str, code: str, extra: str = "") -> Path:
    fn = tmp / f"{name}-{len(list(tmp.iterdir()))}"
    fn.mkdir(mode=0o755)
    (fn / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\nmemory_mb: 64\n{extra}")
    (fn / "main.py").write_text(code)
    return fn


def test_the_new_functions_unused_grants_are_not_told_the_earlier_functions_uses(
    node: LiveNode, tmp_path: Path
) -> None:
    """A's function read a secret; B deploys the name granting the same secret and never
    calls it: B's report says it unused (before, "used", with A's call's time)."""
    name = "reused-grants"
    with node.client() as c:
        assert c.post("/v1/secrets/reuse-s", json={"value": "v" * 20}).status_code in (200, 201)
    a, b = _pair(node, "grants")
    reads = "def handler(event, context):\n    return len(context.secrets['reuse-s'])\n"
    grant = "permissions: {secrets: [reuse-s]}\n"
    run_cli(node.env(a), "deploy", str(_bundle(tmp_path, name, reads, grant)))
    with node.client(a) as c:
        assert c.post(f"/v1/functions/{name}/invoke", json={}).status_code == 200
        used = c.get(f"/v1/functions/{name}/permissions/unused").json()
        assert [u["name"] for u in used["used"]] == ["reuse-s"], used
        assert c.delete(f"/v1/functions/{name}").status_code == 204
    quiet = "def handler(event, context):\n    return 0\n"
    run_cli(node.env(b), "deploy", str(_bundle(tmp_path, name, quiet, grant)))
    with node.client(b) as c:
        report = c.get(f"/v1/functions/{name}/permissions/unused").json()
    assert report["used"] == [] and report["unused"]["secrets"] == ["reuse-s"], report


def test_an_async_calls_error_is_not_shown_to_the_names_next_owner(
    node: LiveNode, tmp_path: Path
) -> None:
    """B calls A's function async (invoking is not owned); it fails and B is not shown
    the message. Once A removed it and B deployed the name, B is still not shown it."""
    name = "reused-reveal"
    a, b = _pair(node, "reveal")
    failing = "def handler(event, context):\n    raise ValueError('message-of-a')\n"
    run_cli(node.env(a), "deploy", str(_bundle(tmp_path, name, failing, "retry: {attempts: 1}\n")))
    queued = invoke_async(node, name, {}, key=b)
    assert queued.status_code == 202, queued.text
    invocation_id = queued.json()["invocation_id"]
    before = wait_for(node, invocation_id, key=b)
    assert before["status"] == "dead" and before["error"]["message"] is None, before
    assert "message-of-a" in wait_for(node, invocation_id)["error"]["message"]  # the admin
    with node.client(a) as c:
        assert c.delete(f"/v1/functions/{name}").status_code == 204
    quiet = "def handler(event, context):\n    return 0\n"
    run_cli(node.env(b), "deploy", str(_bundle(tmp_path, name, quiet)))
    assert wait_for(node, invocation_id, key=b)["error"]["message"] is None
