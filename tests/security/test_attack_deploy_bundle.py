"""Invariant 8, the deploy path: a developer key holder sends hostile bundles and
requirements; each is refused with a clear 4xx, audited, changes nothing, leaves no
staging files behind, names no host path, and never stops a node from (re)starting."""

from __future__ import annotations

import gzip
import io
import json
import os
import sqlite3
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from donjon.bundle import BundleError, build_bundle
from donjon.bundle.archive import MAX_BUNDLE_BYTES
from harness import EXAMPLES, LiveNode, run_cli, start_node
from sec_support import audit_records
from trigger_sweep import send_raw

_MAIN = b"def handler(event, context):\n    return {'ok': True}\n"


# -- a node of our own, which these attacks restart -----------------------------------


def _restart(node: LiveNode) -> None:
    node.stop()
    node.serve_again()


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node of this module's own, so restarting it disturbs no other test."""
    live = start_node(tmp_path_factory.mktemp("own-node"))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def dev_key(own: LiveNode) -> str:
    key: str = own.create_key("attacker", "developer")["key"]
    return key


@pytest.fixture(scope="module")
def shared_dev_key(node: LiveNode) -> str:
    key: str = node.create_key("bundle-attacker", "developer")["key"]
    return key


# -- hand-made archives -----------------------------------------------------------------


def _add(
    tar: tarfile.TarFile,
    name: str,
    data: bytes | None = None,
    *,
    size: int | None = None,
    fill: io.RawIOBase | None = None,
) -> None:
    info = tarfile.TarInfo(name)
    if data is None and size is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        return
    info.mode = 0o644
    info.size = len(data) if data is not None else int(size or 0)
    tar.addfile(info, io.BytesIO(data) if data is not None else fill)


def _archive(
    manifest: str, extra: Sequence[tuple[str, bytes | None]] = (), zeros: int = 0
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        _add(tar, "donjon.yaml", manifest.encode())
        _add(tar, "main.py", _MAIN)
        if zeros:
            _add(tar, "zeros.bin", size=zeros, fill=_Zeros(zeros))
        for name, data in extra:
            _add(tar, name, data)
    return buf.getvalue()


class _Zeros(io.RawIOBase):
    """`n` zero bytes, read without holding them all in memory."""

    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def _deploy(node: LiveNode, key: str, archive: bytes) -> httpx.Response:
    with node.client(key) as c:
        return c.post(
            "/v1/functions",
            content=archive,
            headers={"content-type": "application/gzip"},
            timeout=300,
        )


def _names(node: LiveNode) -> set[str]:
    with node.client() as c:
        r = c.get("/v1/functions")
    assert r.status_code == 200, r.text
    return {f["name"] for f in r.json()}


def _du(root: Path) -> int:
    """Bytes allocated under `root` (what the attack would have filled)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


def _staging(node: LiveNode) -> list[str]:
    bundles = node.data_dir / "bundles"
    return (
        [p.name for p in bundles.iterdir() if p.name.startswith(".incoming")]
        if bundles.is_dir()
        else []
    )


def _refused(r: httpx.Response, node: LiveNode) -> dict[str, Any]:
    """A clear 4xx problem that names no host path; returns it."""
    assert 400 <= r.status_code < 500, f"{r.status_code} {r.text[:2000]}"
    body: dict[str, Any] = r.json()
    for leak in (str(node.data_dir), "/tmp", ".incoming", "/var/lib"):
        assert leak not in r.text, f"{leak!r} in {r.text[:2000]}"
    return body


def _assert_audited(node: LiveNode, body: dict[str, Any]) -> list[dict[str, Any]]:
    records = audit_records(node, body["request_id"])
    assert [(r["action"], r["outcome"]) for r in records] == [("function.deploy", "rejected")]
    return records


# -- 8: the stored form of a manifest ---------------------------------------------------

_ALIASES = (
    "name: {name}\nhandler: main.handler\ninput_schema:\n  type: object\n"
    "  x-a: &a [" + ", ".join(['"' + "a" * 100 + '"'] * 30) + "]\n"
    "  x-b: &b [" + ", ".join(["*a"] * 30) + "]\n"
    "  examples: [" + ", ".join(["*b"] * 30) + "]\n"
)


@pytest.mark.parametrize(
    ("name", "manifest"),
    [
        ("alias-bomb", _ALIASES),
        (
            "long-text",
            "name: {name}\nhandler: main.handler\ninput_schema:\n  type: object\n"
            '  description: "' + "\u00e9" * 20_000 + '"\n',
        ),
    ],
)
def test_manifest_whose_stored_form_is_oversized_is_not_stored(
    own: LiveNode, dev_key: str, name: str, manifest: str
) -> None:
    """A manifest that grows past 64 KiB once stored is refused, unstored; the node restarts."""
    text = manifest.format(name=name)
    assert len(text.encode()) < 64 * 1024
    r = _deploy(own, dev_key, _archive(text))
    body = _refused(r, own)
    # Refused for its stored size, or earlier by the manifest bounds (YAML aliases are
    # refused outright, input_schema is capped at 16 KiB): test_attack_deploy_scan.py.
    assert any(why in body["detail"] for why in ("64", "65536", "aliases", "16 KiB")), body
    _assert_audited(own, body)
    assert name not in _names(own)
    _restart(own)
    assert name not in _names(own)


def test_bad_stored_record_does_not_stop_the_node(own: LiveNode, dev_key: str) -> None:
    """A version record the node cannot load is skipped, logged and audited at start."""
    good = _deploy(own, dev_key, _archive("name: survivor\nhandler: main.handler\n"))
    assert good.status_code == 201, good.text
    db = sqlite3.connect(own.data_dir / "donjon.db")
    with db:  # as an older version wrote it: with no MAC, given one at the next start
        db.execute(
            "INSERT INTO function_versions (name, version, digest, manifest, created_at,"
            " created_by) VALUES (?, ?, ?, ?, ?, ?)",
            ("rotten", 1, "0" * 64, '{"name": "rotten", "handler": 7}', time.time(), "test"),
        )
        db.execute("INSERT INTO functions (name, version) VALUES (?, ?)", ("rotten", 1))
    db.close()
    for marker in ("versions-sealed", "functions-sealed"):
        (own.data_dir / marker).unlink()
    _restart(own)
    assert _names(own) == {"survivor"}
    with own.client() as c:
        audit = c.get("/v1/audit", params={"n": 200}).json()
        assert c.post("/v1/functions/survivor/invoke", json={}).json() == {"ok": True}
    skipped = [a for a in audit if a["action"] == "function.load"]
    assert [(a["target"], a["outcome"]) for a in skipped] == [("rotten@1", "skipped")]
    assert skipped[0]["detail"]["error"] == "ManifestError"  # sealed, then read: not its MAC
    log = (own.data_dir / "serve.log").read_text()
    assert "WARNING" in log and "rotten" in log


def test_stale_staging_is_swept_at_start(own: LiveNode) -> None:
    """Staging left by a crash (deep and read-only) is removed when the node starts."""
    own.stop()
    stale = own.data_dir / "bundles" / ".incoming-crashed"
    stale.mkdir()
    deep = str(stale)
    for _ in range(1_100):  # one level at a time: Path.mkdir(parents=True) recurses
        deep += "/d"
        os.mkdir(deep)
    Path(deep, "f").write_bytes(b"x" * 4096)
    os.chmod(stale, 0o500)
    own.serve_again()
    assert _staging(own) == []


# -- 9: archive limits ------------------------------------------------------------------

_DEEP = "/".join(["d"] * 1_100)
#: Every level as a directory member of its own, as `tar` itself would write them.
_LEVELS: list[tuple[str, bytes | None]] = [
    ("/".join(["d"] * n) + "/", None) for n in range(1, 1_101)
]
_BOMB = 200 * 1024 * 1024


def _bundle_attack(node: LiveNode, key: str, archive: bytes) -> dict[str, Any]:
    bundles = node.data_dir / "bundles"
    before = _du(bundles)
    r = _deploy(node, key, archive)
    body = _refused(r, node)
    _assert_audited(node, body)
    assert _staging(node) == []
    after = _du(bundles)
    print(f"archive {len(archive)} B -> {r.status_code}; bundles/ {before} -> {after} B")
    assert after <= before
    return body


def test_deep_directories_and_zip_bomb_are_refused(node: LiveNode, shared_dev_key: str) -> None:
    """1,100 nested directories plus 200 MiB of zeros: a 4xx, audited, nothing left on disk."""
    archive = _archive(
        "name: bomb-deep\nhandler: main.handler\n",
        [*_LEVELS, (_DEEP + "/x.py", b"x = 1\n")],
        zeros=_BOMB,
    )
    body = _bundle_attack(node, shared_dev_key, archive)
    assert "zeros.bin" in body["detail"] and "bytes" in body["detail"], body


def test_deep_directories_are_refused(node: LiveNode, shared_dev_key: str) -> None:
    """1,100 nested directories alone: refused for their depth before anything walks them."""
    body = _bundle_attack(
        node,
        shared_dev_key,
        _archive("name: deep\nhandler: main.handler\n", [*_LEVELS, (_DEEP + "/x.py", b"x = 1\n")]),
    )
    assert "levels deep" in body["detail"], body


def test_zip_bomb_is_refused(node: LiveNode, shared_dev_key: str) -> None:
    """200 MiB of zeros in 200 KB: refused on its declared size, never written out."""
    body = _bundle_attack(
        node, shared_dev_key, _archive("name: bomb\nhandler: main.handler\n", zeros=_BOMB)
    )
    assert "zeros.bin" in body["detail"] and "bytes" in body["detail"], body


def test_too_many_members_are_refused(node: LiveNode, shared_dev_key: str) -> None:
    """An archive of 25,000 empty files is refused on its member count."""
    body = _bundle_attack(
        node,
        shared_dev_key,
        _archive("name: many\nhandler: main.handler\n", [(f"m/{i}", b"") for i in range(25_000)]),
    )
    assert "members" in body["detail"] or "files" in body["detail"], body


def _chained_headers(kind: str, count: int) -> bytes:
    """A bundle whose main.py follows `count` extended (pax) or GNU long-name headers in a
    row, each a block of its own: tarfile reads each next header by calling itself."""
    raw = io.BytesIO()

    def member(info: tarfile.TarInfo, data: bytes) -> None:
        info.size = len(data)
        raw.write(info.tobuf(tarfile.GNU_FORMAT) + data + bytes(-len(data) % tarfile.BLOCKSIZE))

    member(tarfile.TarInfo("donjon.yaml"), b"name: chain\nhandler: main.handler\n")
    header = tarfile.TarInfo("././@LongLink")
    header.type = tarfile.XHDTYPE if kind == "pax" else tarfile.GNUTYPE_LONGNAME
    for _ in range(count):
        member(header, b"13 comment=x\n" if kind == "pax" else b"main.py\0")
    member(tarfile.TarInfo("main.py"), _MAIN)
    raw.write(bytes(2 * tarfile.BLOCKSIZE))
    return gzip.compress(raw.getvalue())


@pytest.mark.parametrize("kind", ["pax", "gnu"])
def test_thousands_of_chained_headers_are_refused_clearly(
    node: LiveNode, shared_dev_key: str, kind: str
) -> None:
    """3,000 extended (or long-name) headers in a row before one member, 13 KB of archive:
    a clear 4xx naming the headers, audited, nothing left (was a 500, RecursionError)."""
    body = _bundle_attack(node, shared_dev_key, _chained_headers(kind, 3_000))
    assert "headers in a row" in body["detail"], body


@pytest.mark.parametrize(
    ("kind", "length", "status"), [("empty", 0, 400), ("oversized", MAX_BUNDLE_BYTES + 1, 413)]
)
def test_a_deploy_without_a_bundle_is_refused_and_audited(
    node: LiveNode, kind: str, length: int, status: int
) -> None:
    """A deploy whose body is empty, or declared larger than a bundle may be, is refused
    and its refusal is in the audit log as every other refused deploy's is."""
    key = node.create_key(f"no-bundle-{kind}", "developer")["key"]
    headers = {"authorization": f"Bearer {key}", "content-length": str(length)}
    reply = send_raw(node, "POST", "/v1/functions", headers)
    assert reply.status == status, reply.text
    records = audit_records(node, json.loads(reply.body)["request_id"])
    assert [(a["action"], a["outcome"]) for a in records] == [("function.deploy", "denied")]


# -- 11: errors name members, never host paths ------------------------------------------


@pytest.mark.parametrize("name", ["a" * 300, "p/" + "b" * 300 + "/x.py"])
def test_long_member_name_error_names_no_host_path(
    node: LiveNode, shared_dev_key: str, name: str
) -> None:
    """A 300-character member name is refused with an error that names no host path."""
    r = _deploy(
        node, shared_dev_key, _archive("name: longname\nhandler: main.handler\n", [(name, b"x")])
    )
    body = _refused(r, node)
    _assert_audited(node, body)


def test_manifest_errors_name_no_host_path(node: LiveNode, shared_dev_key: str) -> None:
    """A manifest that names a missing module is refused without the staging path."""
    body = _refused(
        _deploy(node, shared_dev_key, _archive("name: nomodule\nhandler: gone.handler\n")), node
    )
    assert "gone" in body["detail"], body


# -- 10: requirements that would run code on the deploying host -------------------------


def _evil_package(root: Path, marker: Path) -> Path:
    """A local package whose setup.py writes `marker` (and what it could read) when run."""
    pkg = root / "evilpkg"
    pkg.mkdir()
    (pkg / "setup.py").write_text(
        "import os, pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text(os.environ.get('DONJON_API_KEY', 'none'))\n"
        "from setuptools import setup\n"
        "setup(name='evilpkg', version='1.0', py_modules=[])\n"
    )
    return pkg


def _function(root: Path, requirements: str) -> Path:
    src = root / "fn"
    src.mkdir()
    (src / "donjon.yaml").write_text("name: reqs\nhandler: main.handler\n")
    (src / "main.py").write_bytes(_MAIN)
    (src / "requirements.txt").write_text(requirements)
    return src


_HOSTILE = {
    "local-dir": "{pkg}\n",
    "editable": "-e {pkg}\n",
    "file-url": "evilpkg @ file://{pkg}\n",
    "no-binary": "--no-binary=:all:\n{pkg}\n",
    "index-url": "--index-url https://pypi.invalid/simple\n{pkg}\n",
    "vcs-url": "git+https://github.invalid/evil/evilpkg.git#egg=evilpkg\n{pkg}\n",
    "named-vcs-url": "evilpkg @ git+https://github.invalid/evil/evilpkg.git\n",
    "nested-file": "-r other.txt\n",
}


@pytest.mark.parametrize("kind", sorted(_HOSTILE))
def test_hostile_requirement_is_refused_before_pip_runs(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requirements.txt lines that are not index requirements never reach pip."""
    marker = tmp_path / "setup-py-ran"
    pkg = _evil_package(tmp_path, marker)
    src = _function(tmp_path, _HOSTILE[kind].format(pkg=pkg))
    monkeypatch.setenv("DONJON_API_KEY", "dj_secret_of_the_deployer")
    with pytest.raises(BundleError, match=r"requirements\.txt line 1") as raised:
        build_bundle(src)
    assert raised.value.hint
    assert not marker.exists(), marker.read_text()


def test_donjon_deploy_refuses_local_requirement(
    node: LiveNode, shared_dev_key: str, tmp_path: Path
) -> None:
    """`donjon deploy` refuses a local-directory requirement with one clear line; no pip."""
    marker = tmp_path / "setup-py-ran"
    src = _function(tmp_path, f"{_evil_package(tmp_path, marker)}\n")
    done = run_cli(node.env(shared_dev_key), "deploy", str(src), check=False)
    assert done.returncode != 0
    assert "requirements.txt line 1" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists(), marker.read_text()
    assert "reqs" not in _names(node)


def test_pinned_index_requirement_still_vendors(tmp_path: Path) -> None:
    """A pinned index requirement (with a comment, a marker) is still vendored as a wheel."""
    src = tmp_path / "naturalsize"
    src.mkdir()
    for f in ("donjon.yaml", "main.py"):
        (src / f).write_bytes((EXAMPLES / "naturalsize" / f).read_bytes())
    pinned = (EXAMPLES / "naturalsize" / "requirements.txt").read_text().strip()
    (src / "requirements.txt").write_text(
        f'# the one dependency\n\n{pinned} ; python_version >= "3.8"  # pinned\n'
    )
    _, archive = build_bundle(src)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = tar.getnames()
    assert ".deps/humanize/__init__.py" in names
    assert not [n for n in names if n.startswith(".deps/bin")]
