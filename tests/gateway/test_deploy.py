"""Deploying through the API: versions, retirement of old sandboxes, refusals."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from harness import LiveNode


def _write(root: Path, name: str, body: str, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\n{extra}")
    (root / "main.py").write_text(body)
    return root


def test_handler_that_fails_to_import_fails_the_deploy(node: LiveNode, tmp_path: Path) -> None:
    """A handler whose import raises is refused at deploy, with the reason; nothing changes."""
    fn = _write(tmp_path / "broken", "broken-import", "raise ImportError('no such thing')\n")
    from donjon.bundle import build_bundle

    _, archive = build_bundle(fn)
    with node.client() as c:
        r = c.post("/v1/functions", content=archive)
        assert r.status_code == 422
        assert "no such thing" in r.json()["detail"]
        assert c.get("/v1/functions/broken-import").status_code == 404


def test_new_version_takes_over_and_old_state_is_gone(node: LiveNode, tmp_path: Path) -> None:
    """After a deploy, calls reach the new version; the old version's process is retired."""
    one = _write(
        tmp_path / "v1",
        "versioned",
        "STATE = []\n"
        "def handler(e, c):\n    STATE.append(1)\n    return {'v': 1, 'n': len(STATE)}\n",
        "isolation: warm\n",
    )
    node.deploy(one)
    assert node.invoke("versioned", {}).json() == {"v": 1, "n": 1}
    assert node.invoke("versioned", {}).json() == {"v": 1, "n": 2}
    two = _write(
        tmp_path / "v2",
        "versioned",
        "STATE = []\n"
        "def handler(e, c):\n    STATE.append(1)\n    return {'v': 2, 'n': len(STATE)}\n",
        "isolation: warm\n",
    )
    result = node.deploy(two)
    assert result["version"] == 2
    assert node.invoke("versioned", {}).json() == {"v": 2, "n": 1}


def test_route_taken_by_another_function_is_refused(node: LiveNode, tmp_path: Path) -> None:
    """Two functions cannot claim the same http route."""
    trig = "triggers:\n  - http: {path: /shared-route, methods: [GET], auth: key}\n"
    node.deploy(_write(tmp_path / "a", "route-a", "def handler(e, c):\n    return 1\n", trig))
    from donjon.bundle import build_bundle

    _, archive = build_bundle(
        _write(tmp_path / "b", "route-b", "def handler(e, c):\n    return 2\n", trig)
    )
    with node.client() as c:
        r = c.post("/v1/functions", content=archive)
        assert r.status_code == 422
        assert "route-a" in r.json()["detail"]
        assert c.get("/v1/functions/route-b").status_code == 404


def test_deploy_needs_the_developer_role(node: LiveNode, tmp_path: Path) -> None:
    """An invoker key cannot deploy."""
    from donjon.bundle import build_bundle

    _, archive = build_bundle(
        _write(tmp_path / "x", "not-allowed", "def handler(e, c):\n    return 1\n")
    )
    invoker = node.create_key("inv", "invoker")["key"]
    with node.client(invoker) as c:
        assert c.post("/v1/functions", content=archive).status_code == 403
    developer = node.create_key("dev", "developer")["key"]
    with node.client(developer) as c:
        assert c.post("/v1/functions", content=archive).status_code == 201


def test_input_schema_is_enforced(node: LiveNode, tmp_path: Path) -> None:
    """An event that does not match input_schema is a 422 and never reaches the function."""
    schema = "input_schema: {type: object, required: [url]}\n"
    node.deploy(_write(tmp_path / "s", "schema-fn", "def handler(e, c):\n    return e\n", schema))
    assert node.invoke("schema-fn", {"nope": 1}).status_code == 422
    assert node.invoke("schema-fn", {"url": "x"}).json() == {"url": "x"}


def test_egress_grants_deploy_without_warning(node: LiveNode, tmp_path: Path) -> None:
    """Egress grants are honoured (through the egress proxy): no "not enforced" warning."""
    extra = 'permissions: {egress: ["api.example.com:443", "*.s3.example.com:443"]}\n'
    fn = _write(tmp_path / "w", "warned", "def handler(e, c):\n    return 1\n", extra)
    warnings = node.deploy(fn)["warnings"]
    assert not any("egress" in w for w in warnings)


def test_egress_grant_to_a_private_address_fails_the_deploy(node: LiveNode) -> None:
    """A grant of 10.0.0.5 (no DONJON_EGRESS_ALLOW_NETWORKS) is refused: 422 with the reason."""
    manifest = (
        b'name: private-egress\nhandler: main.handler\npermissions: {egress: ["10.0.0.5:5432"]}\n'
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (
            ("donjon.yaml", manifest),
            ("main.py", b"def handler(e, c):\n    return 1\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with node.client() as c:
        r = c.post("/v1/functions", content=buf.getvalue())
        assert r.status_code == 422, r.text
        assert "10.0.0.5:5432" in r.text and "private 10/8" in r.text
        assert "DONJON_EGRESS_ALLOW_NETWORKS" in r.text
        assert c.get("/v1/functions/private-egress").status_code == 404


def test_schedule_that_can_never_fire_fails_the_deploy(node: LiveNode) -> None:
    """A schedule on 30 February is refused by the server at deploy; nothing is deployed."""
    manifest = (
        b"name: never-fires\nhandler: main.handler\ntriggers:\n  - schedule: '0 0 30 feb *'\n"
    )
    code = b"def handler(e, c):\n    return 1\n"
    buf = io.BytesIO()  # packed by hand: the CLI's own build would refuse it first
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("donjon.yaml", manifest), ("main.py", code)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with node.client() as c:
        r = c.post("/v1/functions", content=buf.getvalue())
        assert r.status_code == 422, r.text
        assert "can never fire" in r.text
        assert c.get("/v1/functions/never-fires").status_code == 404


def test_schedule_macros_and_names_deploy(node: LiveNode, tmp_path: Path) -> None:
    """@daily and a schedule with month and day names are accepted at deploy."""
    fn = _write(
        tmp_path / "named",
        "named-schedules",
        "def handler(e, c):\n    return 1\n",
        "triggers:\n  - schedule: '@daily'\n  - schedule: '30 6 * jan-mar mon-fri'\n",
    )
    assert node.deploy(fn)["version"] == 1
