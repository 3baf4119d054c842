"""Sort the samples of `perf record -e cpu-clock -a -g` into what an invocation call does.

    perf script -i FILE | .venv/bin/python bench/perf_split.py --calls N --hz F --supervisor PID

bench/invocation_split.py --perf FILE records the window of its calls; this reads
`perf script`'s text (each sample: the task, its pid, then its call chain from the
leaf up) and puts every sample in one part, the first of `_PARTS` whose kernel
function is on the sample's chain (a page fault inside a system call counts as the
fault, a clone's namespace as the namespace), else the system call's name, else the
process's own code. Each part is printed in ms of CPU per call (samples / F / N),
for the supervisor, the workers, the calling process, kernel threads and idle.
docs/performance.md, "Where an invocation call's CPU goes, whole".
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

#: (part, kernel functions any of which puts a sample in it), first match wins
_PARTS = (
    ("clone: network namespace", ("copy_net_ns",)),
    ("clone: IPC/mount/pid namespaces", ("copy_ipcs", "copy_mnt_ns", "copy_pid_ns")),
    ("clone: copy of the address space", ("dup_mm", "dup_mmap", "copy_page_range")),
    ("clone: the rest", ("kernel_clone", "copy_process")),
    ("exit: address space teardown", ("exit_mmap", "__mmput", "mmput")),
    ("exit: namespaces", ("exit_task_namespaces", "free_nsproxy", "put_mnt_ns", "put_ipc_ns")),
    ("exit: files, mounts (task_work)", ("task_work_run", "exit_files")),
    ("exit: the rest", ("do_exit", "release_task", "do_group_exit")),
    ("fault: copy-on-write", ("do_wp_page", "wp_page_copy")),
    ("fault: file pages", ("do_fault", "filemap_map_pages", "do_read_fault")),
    ("fault: new anonymous pages", ("do_anonymous_page",)),
    ("fault: the rest", ("exc_page_fault", "asm_exc_page_fault", "handle_mm_fault")),
    ("mount(2)", ("__x64_sys_mount", "path_mount")),
    ("network namespace cleanup", ("cleanup_net",)),
    ("scheduler, switches", ("schedule", "__schedule", "finish_task_switch.isra.0")),
)
_HEAD = re.compile(r"^(\S.*?)\s+(\d+)(?:/(\d+))?\s+(?:\[\d+\]\s+)?[\d.]+:")
_FRAME = re.compile(r"^\s+[0-9a-f]+\s+(\S+)\s+\((.*)\)\s*$")


def _part(frames: list[tuple[str, str]]) -> str:
    names = {sym.split("+")[0] for sym, _ in frames}
    for part, funcs in _PARTS:
        if names.intersection(funcs):
            return part
    for sym, _dso in frames:
        s = sym.split("+")[0]
        if s.startswith("__x64_sys_"):
            return "syscall: " + s[len("__x64_sys_") :]
    if frames and "kernel" in frames[0][1]:
        return "kernel, other"
    return "user space (the interpreter, libc)"


def _who(comm: str, pid: int, supervisor: int, bench: int) -> str:
    if comm == "swapper":
        return "idle"
    if pid == supervisor:
        return "supervisor"
    if comm.startswith("python3.11"):
        return "workers"
    if pid == bench or comm == "python":
        return "caller (bench process)"
    if comm.startswith(("kworker", "ksoftirqd", "rcu", "kdamond", "migration")):
        return "kernel threads" + (" (netns workqueue)" if comm.endswith("-ne") else "")
    return "other: " + comm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--hz", type=float, default=4000.0)
    parser.add_argument("--supervisor", type=int, required=True)
    parser.add_argument("--bench", type=int, default=0, help="the calling process's pid")
    args = parser.parse_args()
    counts: Counter[tuple[str, str]] = Counter()
    who = ""
    frames: list[tuple[str, str]] = []

    def flush() -> None:
        if who:
            counts[(who, _part(frames))] += 1

    for line in sys.stdin:
        m = _HEAD.match(line)
        if m:
            flush()
            who, frames = _who(m[1], int(m[2]), args.supervisor, args.bench), []
            continue
        f = _FRAME.match(line)
        if f:
            frames.append((f[1], f[2]))
    flush()
    per = 1000.0 / args.hz / args.calls
    by_who: Counter[str] = Counter()
    for (w, _p), n in counts.items():
        by_who[w] += n
    for w, total in by_who.most_common():
        print(f"{w}: {total * per:.3f} ms per call")
        for (w2, p), n in sorted(counts.items(), key=lambda kv: -kv[1]):
            if w2 == w and n * per >= 0.02:
                print(f"    {p:<40} {n * per:7.3f}")


if __name__ == "__main__":
    main()
