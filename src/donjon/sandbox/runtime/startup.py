"""What the supervisor does once, before its first worker: read its configuration,
preload the standard-library modules the function uses, and take the per-call
cgroups' descriptors from the host; then wait for the first worker's report.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import os
import select
import time

from . import jsonwire, lambda_env, landlock, lowlevel, sockets
from .worker import line_buffered, vm_size, warm_bundle_finders

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .watch import Watches

#: Descriptors one control message can carry (the kernel's SCM_MAX_FD).
_MAX_FDS_PER_MESSAGE = 253


def read_config(ctrl: sockets.Socket) -> tuple[dict[str, Any], list[int]]:
    """The configuration the host sends once hello is said, completed with what the
    supervisor learns of itself, and the descriptors that came with it (warm: the
    gateway's channel and the call page)."""
    msg, fds, _flags, _addr = sockets.recv_fds(ctrl, 65536, 2)
    config = jsonwire.loads(msg)
    config["cgroup_slots"] = receive_slots(
        ctrl, int(config.get("cgroup_slot_messages", 0)), int(config.get("cgroup_slot_width", 1))
    )
    config["landlock"] = landlock.abi_version()
    config["call_filter"] = bytes.fromhex(config["call_filter"])
    config["call_watch"] = bytes.fromhex(config.get("call_watch") or "")
    config["warm"] = config["mode"] == "warm"
    lowlevel.prctl(lowlevel.PR_SET_DUMPABLE, 0)
    # CAP_SYS_ADMIN stays effective (workers' namespaces need it); nothing it
    # executes may inherit it, so the ambient and inheritable sets go.
    lowlevel.drop_ambient_capabilities()
    # Nor may it ever gain one by execve: the bounding set goes too, here, once (its
    # effective CAP_SYS_ADMIN stays). Workers inherit it empty; what the kernel kept,
    # if anything, each worker drops again before any function code (worker.py).
    lowlevel.drop_bounding_set(lowlevel.bounding_set())
    config["bounding"] = lowlevel.bounding_set()
    # CAP_SETPCAP was there for that alone: it goes from the effective and permitted
    # sets now, so neither this process nor a worker can change a bounding set again
    # (a worker finding one non-empty fails its start: fail closed).
    lowlevel.drop_capability(lowlevel.CAP_SETPCAP)
    preload(config.get("preload") or [])
    # What every worker would otherwise redo, the same for each: Lambda's variables
    # in the environment (and its root logger, if `logging` was preloaded), the line
    # buffering of stdout, and the finders of the bundle's directories. Workers are
    # copies of this process and inherit all three.
    lambda_env.prepare(config)
    line_buffered()
    warm_bundle_finders()
    config["base_vm"] = vm_size() + 8 * 1024 * 1024  # and room for a worker's own start
    return config, fds


def preload(names: list[str]) -> None:
    """Import the standard-library modules the function uses, once, for every worker.

    sys.path holds the standard library only here (the bundle is added in the
    worker), so a bundle module cannot stand in for one of these. The host
    lists only modules that are safe to import (preload.py's allow-list); even
    so, nothing an import raises, SystemExit included, may end the supervisor.
    """
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: S112  # nosec B112 - a failed import is the worker's problem
            continue


def receive_slots(ctrl: sockets.Socket, messages: int, width: int) -> list[tuple[int, ...]]:
    """The per-call cgroups' descriptors, in the `messages` the host sends after the
    config, `width` per slot (a slot cut short, were any lost, is not used)."""
    fds: list[int] = []
    for _ in range(messages):
        _msg, more, _flags, _addr = sockets.recv_fds(ctrl, 64, _MAX_FDS_PER_MESSAGE)
        fds += more
    width = max(width, 1)
    whole = len(fds) - len(fds) % width
    for fd in fds[whole:]:
        os.close(fd)
    return [tuple(fds[i : i + width]) for i in range(0, whole, width)]


def first_report(
    sock: sockets.Socket, pid: int, deadline: float, poller: select.poll, watches: Watches
) -> dict[str, Any]:
    """The first worker's ready (or failed) report, read from its hand-off socket `sock`
    by `deadline` (monotonic); its process calls are answered meanwhile (watch.py), or an
    import that starts one would wait for an answer that never comes."""
    poller.register(sock.fileno(), select.POLLIN)
    try:
        while (left := deadline - time.monotonic()) > 0:
            for ready, events in poller.poll(int(left * 1000) + 1):
                if watches.owns(ready):
                    watches.on_event(ready, events)
                    continue
                try:
                    data, fds, _flags, _addr = sockets.recv_fds(sock, 65536, 1)
                except OSError as e:
                    return {"op": "failed", "error": f"the worker did not start: {e}"}
                if not watches.take(pid, data, fds):
                    return _report(data)
        return {"op": "failed", "error": "the worker did not start: timed out"}
    finally:
        poller.unregister(sock.fileno())


def _report(data: bytes) -> dict[str, Any]:
    try:
        report = jsonwire.loads(data or b'{"op": "failed", "error": "exited"}')
    except ValueError:
        report = None
    return report if isinstance(report, dict) else {"op": "failed", "error": "bad report"}
