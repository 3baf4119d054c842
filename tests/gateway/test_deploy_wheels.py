"""Vendored wheels at deploy: built for the node's sandbox (GET /v1/runtime) they deploy
and import there; built for another Python they are refused, each named."""

from __future__ import annotations

import zipfile
from pathlib import Path

from donjon.bundle import build_bundle
from donjon.bundle.target import RuntimeTarget
from harness import LiveNode


def _wheel(wheels: Path, tag: str, value: str) -> None:
    with zipfile.ZipFile(wheels / f"fastext-1.0-{tag}.whl", "w") as whl:
        whl.writestr("fastext/__init__.py", f"BUILT_FOR = {value!r}\n")
        whl.writestr(
            "fastext-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fastext\nVersion: 1.0\n"
        )
        whl.writestr(
            "fastext-1.0.dist-info/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n",
        )
        whl.writestr("fastext-1.0.dist-info/RECORD", "")


def _function(root: Path) -> Path:
    root.mkdir()
    (root / "donjon.yaml").write_text("name: fastext-user\nhandler: main.handler\nmemory_mb: 64\n")
    (root / "main.py").write_text(
        "import fastext\n\n\ndef handler(event, context):\n    return fastext.BUILT_FOR\n"
    )
    (root / "requirements.txt").write_text("fastext==1.0\n")
    return root


def _deploy(node: LiveNode, archive: bytes) -> tuple[int, dict[str, object]]:
    with node.client() as c:
        r = c.post("/v1/functions", content=archive, headers={"content-type": "application/gzip"})
    body: dict[str, object] = r.json()
    return r.status_code, body


def test_runtime_target_needs_a_deployer(node: LiveNode) -> None:
    """GET /v1/runtime answers a deployer, and refuses an invoker (403) and no key (401)."""
    invoker = node.create_key("runtime-invoker", "invoker")["key"]
    with node.client() as c:
        r = c.get("/v1/runtime")
    assert r.status_code == 200
    target = RuntimeTarget.from_json(r.json()["python"])
    assert target.implementation == "cp"
    with node.client(invoker) as c:
        assert c.get("/v1/runtime").status_code == 403
    with node.client("") as c:
        assert c.get("/v1/runtime").status_code == 401


def test_wheels_for_the_sandbox_deploy_and_import(node: LiveNode, tmp_path: Path) -> None:
    """Wheels chosen for the node's target deploy, and the compiled-tagged one imports."""
    with node.client() as c:
        target = RuntimeTarget.from_json(c.get("/v1/runtime").json()["python"])
    other = "3.12" if target.python_version != "3.12" else "3.11"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for version in (target.python_version, other):
        nodot = version.replace(".", "")
        _wheel(wheels, f"cp{nodot}-cp{nodot}-{target.platforms[-1]}", f"cp{nodot}")
    src = _function(tmp_path / "fn")
    _, archive = build_bundle(src, find_links=wheels, target=target)
    status, body = _deploy(node, archive)
    assert status == 201, body
    r = node.invoke("fastext-user", {})
    assert r.status_code == 200, r.text
    assert r.json() == target.abi


def test_wheels_for_another_python_are_refused(node: LiveNode, tmp_path: Path) -> None:
    """A bundle vendored for another Python version is refused at deploy, naming the wheel."""
    with node.client() as c:
        target = RuntimeTarget.from_json(c.get("/v1/runtime").json()["python"])
    other = "3.12" if target.python_version != "3.12" else "3.11"
    nodot = other.replace(".", "")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    tag = f"cp{nodot}-cp{nodot}-{target.platforms[-1]}"
    _wheel(wheels, tag, f"cp{nodot}")
    wrong = RuntimeTarget(other, "cp", f"cp{nodot}", target.platforms)
    _, archive = build_bundle(_function(tmp_path / "fn"), find_links=wheels, target=wrong)
    status, body = _deploy(node, archive)
    assert status == 422, body
    assert "fastext-1.0" in str(body["detail"])
    assert tag in str(body["detail"])
