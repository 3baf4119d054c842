"""Unpacking within limits, and clean-up that cannot fail."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from donjon.bundle import BundleError, BundleStore, unpack
from donjon.bundle.tree import remove_tree
from donjon.bundle.unpack import MAX_DEPTH, RATIO_FLOOR

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
from donjon.errors import Error


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        b = memoryview(buffer)
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def _tar(members: Sequence[tuple[str, int | None]]) -> bytes:
    """(name, size) members; size None is a directory; contents are zeros."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, size in members:
            info = tarfile.TarInfo(name)
            if size is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = size
                tar.addfile(info, _Zeros(size))
    return buf.getvalue()


def test_ordinary_tree_unpacks(tmp_path: Path) -> None:
    """Nested files and directories unpack with their contents."""
    unpack(_tar([("a/b/c.py", 3), ("d", None), ("e.txt", 0)]), tmp_path)
    assert (tmp_path / "a/b/c.py").read_bytes() == b"\0\0\0"
    assert (tmp_path / "d").is_dir() and (tmp_path / "e.txt").is_file()


def test_depth_is_limited(tmp_path: Path) -> None:
    """A path deeper than MAX_DEPTH levels is refused before anything is made for it."""
    deep = "/".join(["d"] * (MAX_DEPTH + 1))
    with pytest.raises(BundleError, match="levels deep"):
        unpack(_tar([(deep, 1)]), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_declared_size_is_checked_before_writing(tmp_path: Path) -> None:
    """A member larger than the budget is refused on its header; nothing of it is written."""
    with pytest.raises(BundleError, match=r"'big': .* bytes would take the bundle past"):
        unpack(_tar([("small", 10), ("big", RATIO_FLOOR + 1)]), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small"]


def test_long_names_are_refused_without_host_paths(tmp_path: Path) -> None:
    """A 300-byte name is refused naming the member, shortened, not the destination."""
    with pytest.raises(BundleError) as raised:
        unpack(_tar([("a" * 300, 1)]), tmp_path)
    assert str(tmp_path) not in raised.value.message
    assert "aaaa...aaaa" in raised.value.message


@pytest.mark.parametrize(
    "members", [[("x", 1), ("x", 1)], [("x", 1), ("x/y", 1)], [("x/y", 1), ("x", 1)]]
)
def test_clashing_members_are_refused(tmp_path: Path, members: list[tuple[str, int]]) -> None:
    """A member that would replace another (file twice, file and directory) is refused."""
    with pytest.raises(BundleError, match=r"twice|both a file and a directory"):
        unpack(_tar(members), tmp_path)


def test_remove_tree_handles_deep_read_only_trees(tmp_path: Path) -> None:
    """1,100 nested read-only directories are removed without recursion."""
    root = tmp_path / "t"
    path = str(root)
    os.mkdir(path)
    for _ in range(1_100):
        path += "/d"
        os.mkdir(path)
    Path(path, "f").write_text("x")
    for _ in range(1_100):
        os.chmod(path, 0o500)
        path = os.path.dirname(path)
    assert remove_tree(root)
    assert not root.exists()


def test_sweep_removes_stale_staging(tmp_path: Path) -> None:
    """Staging directories are swept; stored bundles are not."""
    store = BundleStore(tmp_path)
    (tmp_path / ".incoming-old" / "x").mkdir(parents=True)
    (tmp_path / ("0" * 64)).mkdir()
    assert store.sweep() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["0" * 64]


def test_inspection_errors_never_name_the_staging_path(tmp_path: Path) -> None:
    """An inspector's error that names the staging path is re-worded to "the bundle"."""
    store = BundleStore(tmp_path)

    def refuse(tree: Path) -> None:
        raise Error(f"{tree} has more than 10000 text files", hint="scan less")

    with pytest.raises(BundleError) as raised:
        store.add(_tar([("main.py", 1)]), refuse)
    assert raised.value.message == "the bundle has more than 10000 text files"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["pax", "gnu"])
def test_huge_extended_header_is_refused_before_it_is_read(tmp_path: Path, kind: str) -> None:
    """A few KB of archive whose pax header (or GNU long name) is megabytes is refused by
    its declared size, before tarfile reads and parses it whole in the gateway."""
    buf = io.BytesIO()
    fmt = tarfile.PAX_FORMAT if kind == "pax" else tarfile.GNU_FORMAT
    with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as tar:
        if kind == "pax":
            info = tarfile.TarInfo("main.py")
            info.pax_headers = {"comment": "6 a=b\n" * 400_000}  # 2.4 MB of records
        else:
            info = tarfile.TarInfo("d/" * 200_000 + "main.py")  # a 400 KB long name
        tar.addfile(info, io.BytesIO(b""))
    assert len(buf.getvalue()) < 64 * 1024
    with pytest.raises(BundleError, match="extended or long-name header"):
        unpack(buf.getvalue(), tmp_path / "out")


def test_a_long_path_in_a_pax_header_still_unpacks(tmp_path: Path) -> None:
    """What pax headers are for (a path over 100 bytes) is well under the cap."""
    name = "pkg/" + "a" * 150 + ".py"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    (tmp_path / "out").mkdir()
    unpack(buf.getvalue(), tmp_path / "out")
    assert (tmp_path / "out" / name).read_bytes() == b"ok"
