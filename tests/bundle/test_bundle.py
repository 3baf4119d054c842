"""Bundles: vendoring, deterministic digests, and safe unpacking."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from donjon.bundle import BundleError, BundleStore, build_bundle, tree_digest, unpack


def _fn(root: Path, body: str = "def handler(e, c):\n    return 1\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "donjon.yaml").write_text("name: f\nhandler: main.handler\n")
    (root / "main.py").write_text(body)
    return root


def _tar(entries: list[tarfile.TarInfo], data: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def test_digest_is_deterministic(tmp_path: Path) -> None:
    """The same sources give the same archive and the same digest."""
    src = _fn(tmp_path / "a")
    _, one = build_bundle(src)
    _, two = build_bundle(src)
    store = BundleStore(tmp_path / "store")
    assert store.add(one, lambda p: None)[0] == store.add(two, lambda p: None)[0]


def test_digest_changes_with_content(tmp_path: Path) -> None:
    """Any change to a file changes the digest."""
    a = _fn(tmp_path / "a")
    before = tree_digest(a)
    (a / "main.py").write_text("def handler(e, c):\n    return 2\n")
    assert tree_digest(a) != before


def test_stored_bundle_is_read_only(tmp_path: Path) -> None:
    """A stored bundle's files are not writable."""
    _, archive = build_bundle(_fn(tmp_path / "a"))
    digest, _ = BundleStore(tmp_path / "s").add(archive, lambda p: None)
    path = tmp_path / "s" / digest / "main.py"
    assert path.stat().st_mode & 0o222 == 0


def test_build_precompiles_code(tmp_path: Path) -> None:
    """Bundles carry bytecode so the read-only sandbox never compiles at import."""
    _, archive = build_bundle(_fn(tmp_path / "a"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert any(n.endswith(".pyc") for n in tar.getnames())


def test_symlinks_are_refused_at_build(tmp_path: Path) -> None:
    """A source tree with a symbolic link (say, to /etc/passwd) cannot be bundled."""
    src = _fn(tmp_path / "a")
    (src / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match="link"):
        build_bundle(src)


def test_vendors_requirements_from_wheels(tmp_path: Path) -> None:
    """requirements.txt is installed into .deps/ from a local wheel directory."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "tinydep-1.0-py3-none-any.whl", "w") as whl:
        whl.writestr("tinydep/__init__.py", "VALUE = 7\n")
        whl.writestr(
            "tinydep-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n"
        )
        whl.writestr(
            "tinydep-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        whl.writestr("tinydep-1.0.dist-info/RECORD", "")
    src = _fn(tmp_path / "fn")
    (src / "requirements.txt").write_text("tinydep==1.0\n")
    _, archive = build_bundle(src, find_links=wheels)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert ".deps/tinydep/__init__.py" in tar.getnames()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../escape", tarfile.REGTYPE),
        ("/abs", tarfile.REGTYPE),
        ("link", tarfile.SYMTYPE),
        ("hard", tarfile.LNKTYPE),
        ("dev", tarfile.CHRTYPE),
        ("fifo", tarfile.FIFOTYPE),
    ],
)
def test_unsafe_members_are_refused(tmp_path: Path, name: str, kind: bytes) -> None:
    """Path traversal, absolute paths, links and device nodes never unpack."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = 1 if kind == tarfile.REGTYPE else 0
    info.linkname = "/etc/passwd"
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BundleError):
        unpack(_tar([info]), dest)
    assert not (tmp_path / "escape").exists()
    assert list(dest.iterdir()) == []


def test_garbage_is_not_a_bundle(tmp_path: Path) -> None:
    """Bytes that are not a tar archive are a clear error."""
    with pytest.raises(BundleError, match="not a tar"):
        unpack(b"this is not a tarball", tmp_path)


def test_refused_bundle_leaves_nothing(tmp_path: Path) -> None:
    """When inspection refuses a bundle, nothing is stored."""
    _, archive = build_bundle(_fn(tmp_path / "a"))
    store = BundleStore(tmp_path / "s")

    def refuse(_: Path) -> None:
        raise BundleError("no")

    with pytest.raises(BundleError):
        store.add(archive, refuse)
    assert list((tmp_path / "s").iterdir()) == []


def test_unkept_trees_are_removed_unless_a_deploy_still_holds_one(tmp_path: Path) -> None:
    """`remove_unkept` removes the trees nothing keeps or wants, never one a stored version
    keeps, one wanted, or one a deploy was given and has not released (a tree reused by
    a deploy of the same bytes too), nor anything that is not a tree (staging)."""
    store = BundleStore(tmp_path / "s")
    digests = [
        store.add(
            build_bundle(_fn(tmp_path / str(n), f"def handler(e, c):\n    return {n}\n"))[1],
            lambda p: None,
        )[0]
        for n in range(4)
    ]
    for digest in digests:
        store.release(digest)
    (store.root / ".incoming-left").mkdir()
    again = build_bundle(tmp_path / "0")[1]  # the first tree, deployed again: held
    assert store.add(again, lambda p: None)[0] == digests[0]
    assert store.unkept(lambda d: d == digests[1], lambda: {digests[2]}) == [digests[3]]
    removed = store.remove_unkept(lambda d: d == digests[1], lambda: {digests[2]}, digests)
    assert removed == [digests[3]]
    assert {p.name for p in store.root.iterdir()} == {*digests[:3], ".incoming-left"}
    store.release(digests[0])
    assert store.remove_unkept(lambda d: False, set, [digests[0]]) == [digests[0]]  # only those
    assert store.remove_unkept(lambda d: d == digests[1], set, digests) == [digests[2]]


_KILLED_MID_REMOVAL = """
import os, signal, sys
from pathlib import Path
from donjon.bundle import BundleStore

unlink = os.unlink
left = [3]

def dying(path, *a, **k):  # the node is killed after its third file
    unlink(path, *a, **k)
    left[0] -= 1
    if not left[0]:
        os.kill(os.getpid(), signal.SIGKILL)

os.unlink = dying
store = BundleStore(Path(sys.argv[1]))
store.remove_unkept(lambda d: False, set, store.unkept(lambda d: False, set))
"""


def test_a_tree_whose_removal_was_killed_is_never_served_again(tmp_path: Path) -> None:
    """A node killed mid-prune leaves no half-removed tree under its digest: the same
    bytes deployed after the restart are kept whole, not 'reused' with files missing."""
    src = _fn(tmp_path / "a")
    for n in range(8):
        (src / f"mod{n}.py").write_text(f"VALUE = {n}\n")
    _, archive = build_bundle(src)
    store = BundleStore(tmp_path / "s")
    digest, _ = store.add(archive, lambda p: None)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_REMOVAL, str(store.root)], check=False
    )
    assert killed.returncode == -signal.SIGKILL
    restarted = BundleStore(store.root)
    restarted.sweep()
    assert restarted.add(archive, lambda p: None)[0] == digest
    assert tree_digest(restarted.path(digest)) == digest
    assert [p.name for p in store.root.iterdir()] == [digest]
