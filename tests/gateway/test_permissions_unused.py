"""`donjon permissions unused`: grants a live function has not used, from the audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from donjon.bundle import build_bundle
from harness import LiveNode, run_cli

READER = """
def handler(event, context):
    assert "pu-idle-s" in context.secrets  # a name alone is not a read
    value = context.secrets.get("pu-read-s")
    if event.get("fail"):
        raise ValueError("failed after reading")
    return {"length": len(value)}
"""


def _deploy(node: LiveNode, root: Path, manifest: str, code: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "donjon.yaml").write_text(manifest)
    (root / "main.py").write_text(code)
    _, archive = build_bundle(root)
    with node.client() as c:
        r = c.post("/v1/functions", content=archive)
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def readers(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two secrets set; a function granted both that reads one, in each isolation mode."""
    with node.client() as c:
        for name in ("pu-read-s", "pu-idle-s"):
            assert c.post(f"/v1/secrets/{name}", json={"value": f"v-{name}"}).status_code == 201
    names = []
    for isolation in ("invocation", "warm"):
        name = f"pu-reader-{isolation}"
        _deploy(
            node,
            tmp_path_factory.mktemp(name),
            f"name: {name}\nhandler: main.handler\nisolation: {isolation}\n"
            "permissions: {secrets: [pu-read-s, pu-idle-s]}\n",
            READER,
        )
        names.append(name)
    return names


def _unused(node: LiveNode, name: str, **params: Any) -> Any:
    with node.client() as c:
        r = c.get(f"/v1/functions/{name}/permissions/unused", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _record(node: LiveNode, request_id: str) -> dict[str, Any]:
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 500}).json()
    return next(
        r
        for r in records
        if r["action"] == "function.invoke" and r["detail"].get("request_id") == request_id
    )


@pytest.mark.parametrize("isolation", ["invocation", "warm"])
def test_the_secret_never_read_is_listed_unused(
    node: LiveNode, readers: list[str], isolation: str
) -> None:
    """Granted two secrets, reading one: the other is unused, the read one used."""
    name = f"pu-reader-{isolation}"
    assert _unused(node, name)["unused"]["secrets"] == ["pu-read-s", "pu-idle-s"]
    r = node.invoke(name, {})
    assert r.status_code == 200 and r.json() == {"length": len("v-pu-read-s")}
    record = _record(node, r.headers["x-request-id"])
    assert record["detail"]["secrets_read"] == ["pu-read-s"]
    report = _unused(node, name)
    assert report["unused"] == {"secrets": ["pu-idle-s"], "egress": [], "invoke": []}
    [used] = report["used"]
    assert used["kind"] == "secret" and used["name"] == "pu-read-s"
    assert used["record"] == record["seq"] and used["last_used"] == record["ts"]
    assert report["function"] == name and report["days"] == 90 and report["notes"] == []


def test_a_failed_call_still_records_its_read(node: LiveNode, readers: list[str]) -> None:
    """A handler that reads a secret and then raises: the read is in its record."""
    r = node.invoke("pu-reader-invocation", {"fail": True})
    assert r.status_code == 500
    record = _record(node, r.headers["x-request-id"])
    assert record["outcome"] == "FunctionFailed"
    assert record["detail"]["secrets_read"] == ["pu-read-s"]


def test_a_call_that_reads_nothing_has_no_secrets_read(
    node: LiveNode, readers: list[str], tmp_path: Path
) -> None:
    """Names, `in` and len() read no value: secrets_read is omitted and the grant unused."""
    _deploy(
        node,
        tmp_path / "pu-names",
        "name: pu-names\nhandler: main.handler\npermissions: {secrets: [pu-idle-s]}\n",
        "def handler(event, context):\n"
        "    s = context.secrets\n"
        "    return [len(s), 'pu-idle-s' in s, list(s)]\n",
    )
    r = node.invoke("pu-names", {})
    assert r.status_code == 200 and r.json() == [1, True, ["pu-idle-s"]]
    assert "secrets_read" not in _record(node, r.headers["x-request-id"])["detail"]
    assert _unused(node, "pu-names")["unused"]["secrets"] == ["pu-idle-s"]


def test_invoke_and_egress_grants_unused(node: LiveNode, tmp_path: Path) -> None:
    """Invoke grants never used are listed; egress grants never used too."""
    _deploy(
        node,
        tmp_path / "pu-caller",
        "name: pu-caller\nhandler: main.handler\n"
        'permissions: {invoke: [web, probe], egress: ["api.example.com:443"]}\n',
        "def handler(event, context):\n    return 1\n",
    )
    assert node.invoke("pu-caller", {}).status_code == 200
    report = _unused(node, "pu-caller", days=7)
    assert report["unused"] == {
        "secrets": [],
        "egress": ["api.example.com:443"],
        "invoke": ["web", "probe"],
    }
    assert report["days"] == 7 and report["used"] == [] and report["notes"] == []


@pytest.mark.parametrize("days", ["0", "-1", "3651", "99999999999999999999", "abc", "1.5", ""])
def test_bad_windows_are_a_clear_400(node: LiveNode, readers: list[str], days: str) -> None:
    """days 0, negative, huge or not a number: 400 with a problem document and a hint."""
    with node.client() as c:
        r = c.get(f"/v1/functions/{readers[0]}/permissions/unused", params={"days": days})
    assert r.status_code == 400
    problem = r.json()
    assert problem["title"] == "Bad Request" and "1 to 3650" in problem["detail"]  # RFC 9457
    assert "default 90" in problem["detail"]  # the hint


def test_unknown_function_is_404(node: LiveNode) -> None:
    """A function that is not deployed has no grants to report."""
    with node.client() as c:
        assert c.get("/v1/functions/pu-nobody/permissions/unused").status_code == 404


def test_a_caller_without_read_is_denied(node: LiveNode, readers: list[str]) -> None:
    """An invoker key (no function:read) gets 403."""
    key = node.create_key("pu-invoker", "invoker")["key"]
    with node.client(key) as c:
        assert c.get(f"/v1/functions/{readers[0]}/permissions/unused").status_code == 403


def test_cli_json_shape(node: LiveNode, readers: list[str]) -> None:
    """`donjon permissions unused NAME --json` prints the report as the API gives it."""
    node.invoke("pu-reader-invocation", {})
    out = run_cli(
        node.env(), "permissions", "unused", "pu-reader-invocation", "--days", "30", "--json"
    )
    report = json.loads(out.stdout)
    assert set(report) == {"function", "version", "days", "since", "unused", "used", "notes"}
    assert report["days"] == 30 and report["unused"]["secrets"] == ["pu-idle-s"]
    assert set(report["unused"]) == {"secrets", "egress", "invoke"}
    assert set(report["used"][0]) == {"kind", "name", "last_used", "record"}


def test_cli_table(node: LiveNode, readers: list[str]) -> None:
    """The table names each grant with its status."""
    node.invoke("pu-reader-invocation", {})
    out = run_cli(node.env(), "permissions", "unused", "pu-reader-invocation").stdout
    assert "last 90 days" in out
    idle = next(line for line in out.splitlines() if "pu-idle-s" in line)
    assert "unused" in idle
    read = next(line for line in out.splitlines() if "pu-read-s" in line)
    assert " used" in read and "unused" not in read


@pytest.mark.parametrize("days", ["0", "-5", "100000", "x"])
def test_cli_bad_days_is_a_clear_error(node: LiveNode, days: str) -> None:
    """--days out of range or not a number: a one-line error, exit 2, no request."""
    out = run_cli(node.env(), "permissions", "unused", "web", "--days", days, check=False)
    assert out.returncode == 2 and "--days" in out.stderr and "Traceback" not in out.stderr


def test_cli_bad_name_is_a_clear_error(node: LiveNode) -> None:
    """A function name that is not a name is refused before any request."""
    out = run_cli(node.env(), "permissions", "unused", "../keys", check=False)
    assert out.returncode == 2 and "function name" in out.stderr


def test_a_context_invoke_is_a_used_invoke_grant(node: LiveNode, tmp_path: Path) -> None:
    """A callee reached through context.invoke counts as used; the other grant stays unused."""
    for callee in ("pu-callee-a", "pu-callee-b"):
        _deploy(
            node,
            tmp_path / callee,
            f"name: {callee}\nhandler: main.handler\n",
            "def handler(event, context):\n    return {'callee': context.function_name}\n",
        )
    _deploy(
        node,
        tmp_path / "pu-chain",
        "name: pu-chain\nhandler: main.handler\n"
        "permissions: {invoke: [pu-callee-a, pu-callee-b]}\n",
        "def handler(event, context):\n    return context.invoke('pu-callee-a', {})\n",
    )
    r = node.invoke("pu-chain", {})
    assert r.status_code == 200 and r.json() == {"callee": "pu-callee-a"}, r.text
    report = _unused(node, "pu-chain", days=1)
    assert report["unused"] == {"secrets": [], "egress": [], "invoke": ["pu-callee-b"]}
    used = [(u["kind"], u["name"]) for u in report["used"]]
    assert used == [("invoke", "pu-callee-a")], report
