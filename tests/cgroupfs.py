"""The host's view of a sandbox's processes and cgroups, for tests (from /proc and cgroupfs)."""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")


def children(pid: int) -> list[int]:
    """The processes `pid` (any of its threads) is the parent of, now."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def descendants(root: int) -> list[int]:
    """`root` and every process under it, now."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children(pid)
    return out


def pids_cgroups(root: int, function: str) -> list[Path]:
    """The pids cgroups of `function`'s sandboxes under process `root`, each followed by
    its per-call ones (call-*); [] where the host has no pids cgroup for them."""
    found: set[Path] = set()
    for pid in descendants(root):
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            _, controllers, path = line.split(":", 2)
            if "pids" in controllers.split(","):
                base = _ROOT / "pids"
            elif controllers == "":
                base = _ROOT  # cgroup v2
            else:
                continue
            parts = Path(path).parts[1:]
            for i, part in enumerate(parts):
                if part.startswith(f"{function}-v"):
                    found.add(base.joinpath(*parts[: i + 1]))
    out: list[Path] = []
    for d in sorted(found):
        out += [d, *sorted(d.glob("call-*"))]
    return out


def pids_full(dirs: list[Path]) -> bool:
    """Does one of these cgroups hold as many processes as its pids.max allows?"""
    for d in dirs:
        try:
            limit = (d / "pids.max").read_text().strip()
            current = int((d / "pids.current").read_text())
        except (OSError, ValueError):
            continue
        if limit != "max" and current >= int(limit):
            return True
    return False


def thread_cgroups(pid: int) -> list[dict[str, str]]:
    """For each thread of `pid`: controller -> cgroup path (memory, pids, cpu; v2: "")."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        paths = {}
        for line in Path(f"/proc/{pid}/task/{tid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") or [""]:
                if c in ("memory", "pids", "cpu", ""):
                    paths[c] = path
        out.append(paths)
    return out


def exited(pid: int) -> bool:
    """Whether `pid` has exited (a zombie, or gone): its cgroup file then reads the root,
    as the kernel moves an exiting task out of its cgroups."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
