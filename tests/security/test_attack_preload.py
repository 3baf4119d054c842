"""Invariant 3, the supervisor runs no function code: a standard-library module a bundle
merely names is not imported (and so not run) by the supervisor. Invariant 5: reading a
bundle for its imports costs the gateway next to nothing, whatever the bundle holds."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from pathlib import Path

import pytest

from harness import LiveNode
from sec_support import Ready

_NAMES_A_MAIN = """\
def handler(event, context):
    if event.get("never"):
        import unittest.__main__  # noqa: F401  (never runs: it would call unittest.main())
    return {"ok": True}
"""


@pytest.mark.parametrize("mode", ["invocation", "warm"])
def test_bundle_that_names_unittest_main_deploys_and_serves(
    node: LiveNode, tmp_path: Path, mode: str, started: Ready
) -> None:
    """A handler naming `unittest.__main__` in a dead branch deploys: the supervisor runs none."""
    fn = f"sec-preload-main-{mode}"
    (tmp_path / "main.py").write_text(_NAMES_A_MAIN)
    (tmp_path / "donjon.yaml").write_text(
        f"name: {fn}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\nisolation: {mode}\n"
    )
    try:
        node.deploy(tmp_path)  # asserts 201
        started(fn, just_deployed=True)
        r = node.invoke(fn, {})
        assert r.status_code == 200, r.text
        assert r.json() == {"ok": True}
    finally:
        with node.client() as c:
            c.delete(f"/v1/functions/{fn}")


#: A module of 2 MiB less a byte (the preload's cap per file was 2 MiB) that is one tuple
#: of a million names: compiling it takes CPython 6 s and 1.4 GB.
_HEAVY = b"x = (" + b"a," * (1024 * 1024 - 4) + b")\n"


def _archive(name: str, files: dict[str, bytes]) -> bytes:
    """A hand-made bundle archive of `files` (directories added for their parents)."""
    manifest = f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
    files = {
        "donjon.yaml": manifest.encode(),
        "main.py": b"def handler(event, context):\n    return 1\n",
        **files,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        made: set[str] = set()
        for path, data in files.items():
            parts = path.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in made:
                    made.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def test_heavy_modules_in_deps_do_not_stall_or_swell_the_gateway(
    node: LiveNode, tmp_path: Path
) -> None:
    """Vendored modules the deploy scan does not read (`.deps/`), each a 2 MiB tuple of
    names, cost the gateway neither a stalled loop nor a gigabyte when a sandbox starts.

    Before: the gateway compiled every module of the bundle to list its imports (in a
    thread, but compiling holds the GIL): the deploy of this 5 KB archive stalled the
    node's event loop 6 to 8 s per module (a /healthz took 8 s) and grew the gateway by
    1.4 GB."""
    name = "sec-preload-heavy"
    archive = _archive(name, {f".deps/heavy{i}.py": _HEAVY for i in range(2)})
    pid = node.proc.pid
    before = _rss_mb(pid)
    seen = {"rss": before}
    done = threading.Event()

    def watch() -> None:  # the gateway's peak memory while the deploy and its call run
        while not done.is_set():
            seen["rss"] = max(seen["rss"], _rss_mb(pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with node.client() as c:
            r = c.post(
                "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
            )
        assert r.status_code == 201, r.text
        assert node.invoke(name, {}).status_code == 200
    finally:
        done.set()
        watcher.join(60)
        with node.client() as c:
            c.delete(f"/v1/functions/{name}")
    # Memory, not time (no test asserts a timing): compiling grew the gateway 1.4 GB a
    # module; that it no longer compiles is tests/sandbox/test_preload.py's.
    assert seen["rss"] - before < 400, (before, seen)
