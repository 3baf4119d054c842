"""Hostile deploys by a developer: the scan and the manifest parser must not take the node down."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import LiveNode

#: Generous: a loaded 2-core machine may be slow, but a stalled node never answers.
_PATIENCE_S = 60.0


@pytest.fixture(scope="module")
def developer(node: LiveNode) -> str:
    key: str = node.create_key("deploy-attacker", "developer")["key"]
    return key


def _bundle(root: Path, name: str, code: str, manifest_extra: str = "") -> Path:
    root.mkdir(parents=True)
    (root / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\n{manifest_extra}")
    (root / "main.py").write_text(code)
    return root


def _deploy(node: LiveNode, key: str, directory: Path) -> httpx.Response:
    """Send the directory as a bundle archive, built by hand: `donjon deploy` would check
    the manifest on the client first, and an attacker does not use it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(directory.iterdir()):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    with node.client(key) as c:
        return c.post(
            "/v1/functions",
            content=archive,
            timeout=300,
            headers={"content-type": "application/gzip"},
        )


def _memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def _serving(node: LiveNode) -> None:
    """The node is alive and answers /healthz and an invocation of another function."""
    assert node.proc.poll() is None, "the node process died"
    with httpx.Client(base_url=node.url, verify=node.tls, timeout=_PATIENCE_S) as c:
        assert c.get("/healthz").status_code == 200
    r = node.invoke("probe", {"op": "echo"})
    assert r.status_code == 200, r.text


class _Poller:
    """Invokes another function and /healthz in a loop while an attack runs."""

    def __init__(self, node: LiveNode) -> None:
        self.node = node
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.node.url, verify=self.node.tls, timeout=_PATIENCE_S) as c:
            for _ in range(1000):  # bounded
                if self._stop.is_set():
                    return
                try:
                    self.statuses.append(c.get("/healthz").status_code)
                except httpx.HTTPError:
                    self.statuses.append(0)
                self.statuses.append(self.node.invoke("probe", {"op": "echo"}).status_code)
                self._stop.wait(0.2)

    def __enter__(self) -> _Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(_PATIENCE_S * 3)


@pytest.fixture
def poller(node: LiveNode) -> Iterator[_Poller]:
    with _Poller(node) as p:
        yield p
    assert p.statuses and set(p.statuses) == {200}, p.statuses


def _alias_bomb() -> str:
    """Aliases nested 4 deep under input_schema: 10**4 subschemas from ~330 bytes."""
    return (
        "input_schema:\n"
        "  $defs:\n"
        "    a: &a {type: string, minLength: 1}\n"
        "    b: &b {allOf: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]}\n"
        "    c: &c {allOf: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]}\n"
        "    d: &d {allOf: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]}\n"
        "  allOf: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    )


_HANDLER = "def handler(event, context):\n    return {'ok': True}\n"


def _doubling_code() -> str:
    return 'x = "aaaaaaaa"\n' + "x = x + x\n" * 28 + "\n" + _HANDLER


def _heavy_code() -> str:
    """Cheap to write, costly to analyse: a wide helper called from many places."""
    params = ", ".join(f"v{i}=0" for i in range(500))
    body = ", ".join(f"v{i}" for i in range(500))
    calls = "\n".join(f"    r{i} = _f(event, event, event)" for i in range(1500))
    return (
        f"def _f(a, b, c, {params}):\n    return [a, b, c, {body}]\n\n"
        f"def handler(event, context):\n{calls}\n    return 1\n"
    )


def test_doubling_string_does_not_exhaust_the_node(
    node: LiveNode, developer: str, tmp_path: Path, poller: _Poller
) -> None:
    """x = x + x 28 times (a 2 GiB constant) is scanned in bounded memory; the node serves on."""
    before = _memory_kib(node.proc.pid)
    r = _deploy(node, developer, _bundle(tmp_path / "dbl", "attack-doubling", _doubling_code()))
    after = _memory_kib(node.proc.pid)
    print(
        f"doubling deploy: {r.status_code}; node RSS {before['VmRSS'] // 1024} -> "
        f"{after['VmRSS'] // 1024} MiB, peak {before['VmHWM'] // 1024} -> "
        f"{after['VmHWM'] // 1024} MiB"
    )
    assert r.status_code == 201 or 400 <= r.status_code < 500, r.text
    if r.status_code != 201:  # refused by the scan, or by the sandbox at the handler's import
        detail = r.json()["detail"]
        assert "scan" in detail or "MemoryError" in detail, detail
    assert after["VmHWM"] - before["VmHWM"] < 256 * 1024, (before, after)
    _serving(node)


def test_scan_limit_refuses_the_deploy_and_changes_nothing(
    node: LiveNode, developer: str, tmp_path: Path, poller: _Poller
) -> None:
    """Code too costly to analyse fails the deploy closed, with a clear 4xx; nothing is stored."""
    r = _deploy(node, developer, _bundle(tmp_path / "heavy", "attack-heavy", _heavy_code()))
    assert 400 <= r.status_code < 500, r.text
    assert "too complex to analyse" in r.json()["detail"] or "scan" in r.json()["detail"]
    with node.client() as c:
        assert c.get("/v1/functions/attack-heavy").status_code == 404
    _serving(node)


def test_yaml_alias_manifest_is_refused(node: LiveNode, developer: str, tmp_path: Path) -> None:
    """A manifest with YAML anchors and aliases is refused at once, naming them and the line."""
    fn = _bundle(tmp_path / "alias", "attack-alias", _HANDLER, _alias_bomb())
    r = _deploy(node, developer, fn)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "aliases" in detail and "line 5" in detail, detail
    with node.client() as c:
        assert c.get("/v1/functions/attack-alias").status_code == 404
    _serving(node)


def test_oversized_input_schema_is_refused(node: LiveNode, developer: str, tmp_path: Path) -> None:
    """An input_schema over 16 KiB as JSON is refused before jsonschema looks at it."""
    props = {f"field{i:04d}": {"type": "string", "maxLength": 10} for i in range(600)}
    extra = "input_schema: " + json.dumps({"type": "object", "properties": props}) + "\n"
    r = _deploy(node, developer, _bundle(tmp_path / "big", "attack-big-schema", _HANDLER, extra))
    assert r.status_code == 422, r.text
    assert "16 KiB" in r.json()["detail"]


def test_too_deep_input_schema_is_refused(node: LiveNode, developer: str, tmp_path: Path) -> None:
    """An input_schema nested deeper than 32 levels is refused."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        schema = {"type": "array", "items": schema}
    extra = "input_schema: " + json.dumps(schema) + "\n"
    r = _deploy(node, developer, _bundle(tmp_path / "deep", "attack-deep-schema", _HANDLER, extra))
    assert r.status_code == 422, r.text
    assert "deeper than 32" in r.json()["detail"]


def test_ref_fan_out_input_schema_is_refused(
    node: LiveNode, developer: str, tmp_path: Path
) -> None:
    """$refs that fan out to each other (aliases by another name) are refused at deploy."""
    defs: dict[str, Any] = {"l0": {"type": "string"}}
    for i in range(1, 12):
        defs[f"l{i}"] = {"allOf": [{"$ref": f"#/$defs/l{i - 1}"}] * 4}
    extra = "input_schema: " + json.dumps({"$defs": defs, "$ref": "#/$defs/l11"}) + "\n"
    r = _deploy(node, developer, _bundle(tmp_path / "refs", "attack-refs", _HANDLER, extra))
    assert r.status_code == 422, r.text
    assert "expands to more than" in r.json()["detail"]


def test_parallel_hostile_deploys_leave_the_node_serving(
    node: LiveNode, developer: str, tmp_path: Path, poller: _Poller
) -> None:
    """Six hostile deploys at once (alias bombs and costly code) queue or are refused;
    /healthz and another function keep answering throughout."""
    bundles = []
    for i in range(6):
        if i % 2:
            bundles.append(_bundle(tmp_path / f"p{i}", f"attack-par-{i}", _HANDLER, _alias_bomb()))
        else:
            bundles.append(_bundle(tmp_path / f"p{i}", f"attack-par-{i}", _heavy_code()))
    statuses: list[int] = []

    def one(directory: Path) -> None:
        statuses.append(_deploy(node, developer, directory).status_code)

    threads = [threading.Thread(target=one, args=(b,)) for b in bundles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    print(
        f"parallel hostile deploys: {sorted(statuses)}; "
        f"{len(poller.statuses)} healthz/invoke answers meanwhile"
    )
    assert len(statuses) == 6
    assert all(400 <= s < 500 or s == 503 for s in statuses), statuses
    _serving(node)


def test_catastrophic_pattern_cannot_stall_the_node(
    node: LiveNode, developer: str, tmp_path: Path, poller: _Poller
) -> None:
    """An input_schema pattern with exponential backtracking (^(a+)+$) is matched in linear
    time: a crafted event is refused with 422 and the node answers meanwhile."""
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
    extra = "input_schema: " + json.dumps(schema) + "\n"
    r = _deploy(node, developer, _bundle(tmp_path / "re", "attack-regex", _HANDLER, extra))
    assert r.status_code == 201, r.text
    with node.client(developer) as c:
        answer = c.post(
            "/v1/functions/attack-regex/invoke",
            content=json.dumps({"s": "a" * 40 + "!"}),
            timeout=_PATIENCE_S,
        )
    assert answer.status_code == 422, answer.text
    assert "does not match" in answer.text
    _serving(node)
