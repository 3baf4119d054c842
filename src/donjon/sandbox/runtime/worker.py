"""A worker: the only kind of process in which a function's code runs.

A worker of a function without egress (either isolation) is made by one
clone(2) from the supervisor, already pid 1 of new pid, mount, IPC and
network namespaces (clone.py, `start_cloned`). For a function granted
egress, the supervisor forks a parent that enters those namespaces
(network.py), forks the worker as pid 1 there and then relays the worker's
proxy connections (relay.py). Before any of the function's
code is imported, the worker mounts a fresh /tmp and /dev/shm of its own,
closes every descriptor but its hand-off socket, loads the call filter,
drops every capability and sets its memory limit. It then imports the
handler and serves calls handed to it: one call (isolation `invocation`)
or one after another on the gateway's channel, handed to it once (isolation
`warm`, call.py `serve_channel`). When it exits, the kernel kills
everything it started; a warm worker kills what a call started when the
call ends. Its parent-death signal is set here and function code cannot
change it (the call filter refuses prctl(PR_SET_PDEATHSIG)); the supervisor
does not rely on it anyway, and kills the worker itself to end a call.
"""

from __future__ import annotations

import importlib
import os
import resource
import sys

from . import isolation, jsonwire, lambda_env, lowlevel, network, signals, sockets, watch
from .call import _trace, run_call, serve_channel
from .handler_check import check_handler
from .policy_hooks import CallWatch, hide_bundle, tmp_read_only

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .relay import Relay

MIB = 1024 * 1024


HANDOFF_FD = 3
_IMPORT_CPU_S = 30


def vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _descriptor_bound() -> int:
    """Above every descriptor this process may hold: its inherited open-file limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    finite = [n for n in (soft, hard) if n != resource.RLIM_INFINITY]
    return max([65536, *finite]) if finite else (1 << 31) - 1


def _only_descriptors(handoff: sockets.Socket) -> sockets.Socket:
    """stdin/stdout/stderr to /dev/null, the hand-off socket at fd 3, nothing else open."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    if handoff.fileno() != HANDOFF_FD:
        os.dup2(handoff.fileno(), HANDOFF_FD)
    # Every descriptor above, whatever its number (close_range(2)): the supervisor's
    # control socket keeps the gateway's number for it, which passes 65,535 in a
    # gateway whose open-file limit allows it (gateway/open_files.py).
    os.closerange(HANDOFF_FD + 1, _descriptor_bound())
    handoff.detach()
    return sockets.Socket(fileno=HANDOFF_FD)


def _confine(config: dict[str, Any]) -> int | None:
    """Confine this worker; the seccomp listener the supervisor must hold, if any."""
    policies = config.get("policies") or {}
    lowlevel.prctl(lowlevel.PR_SET_PDEATHSIG, signals.SIGKILL)
    lowlevel.private_mounts(config["tmp_mb"] * MIB)
    if config.get("egress"):
        network.hide_egress_dir()  # the relay, not the function, holds the proxy's socket
    # The /proc of the worker's own is staged in /tmp first, then /tmp goes read-only
    # (tmp_write: block), then the Landlock domain, which refuses every mount change.
    isolation.in_worker()
    if policies.get("tmp_write") == "block":
        tmp_read_only()
    isolation.enter_domain(config["landlock"])
    listener = None
    if policies.get("child_processes", "block") != "allow":
        # Every process call stops in the kernel until the supervisor answers (watch.py).
        listener = watch.load_watching(config["call_watch"], int(config["seccomp_nr"]))
    else:
        lowlevel.load_seccomp(config["call_filter"])
    lowlevel.drop_all_capabilities(config["bounding"])
    # The supervisor measured its own size once; a worker starts as a copy of it.
    limit = config["base_vm"] + config["memory_mb"] * MIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if config.get("process_ceiling"):
        # No pids cgroup: the count of the sandbox's uid (its own, in its user namespace)
        # is what stops a call forking without end.
        ceiling = int(config["process_ceiling"])
        resource.setrlimit(resource.RLIMIT_NPROC, (ceiling, ceiling))
    if config["warm"]:
        # The supervisor reads this worker's /proc/<pid>/syscall and fd to see
        # it back waiting after each call (waiting.py); those belong to root
        # and refuse it while the worker is not dumpable. (Landlock, not this
        # flag, keeps other calls out of them; /proc is read-only here.)
        lowlevel.prctl(lowlevel.PR_SET_DUMPABLE, 1)
    else:
        # A one-call worker gets CPU for its import and one call, no more: a spare
        # whose import spins dies here instead of burning a core until reaped.
        cpu = _IMPORT_CPU_S + int(config["timeout_s"]) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    return listener


#: Where a worker imports the function from, before the standard library.
BUNDLE_PATH = ("/fn", "/fn/.deps")


def warm_bundle_finders() -> None:
    """In the supervisor, once: the path finders of the bundle's directories, made and
    their listings read, in `sys.path_importer_cache` (not on `sys.path`: the supervisor
    imports nothing from the bundle). Each worker then finds them ready instead of trying
    a zip importer and listing the directory again. A finder still checks its directory's
    mtime on every lookup (the bundle is read-only: it never changes).

    Directories only: a hand-made archive's `.deps` may be a file, a zip whose listing
    zipimport would hold in memory (hundreds of MB for 65,535 long names); that is read,
    as before, by the worker that imports from it, under the worker's own limits, never
    by the supervisor (no memory rlimit, out of the OOM killer's choice) for every worker
    to inherit (tests/security/test_attack_supervisor_once.py)."""
    for path in BUNDLE_PATH:
        if not os.path.isdir(path):
            if not os.path.exists(path):  # no .deps: no hook takes it, as importlib records
                sys.path_importer_cache[path] = None
            continue  # a file is the worker's to read (see above)
        for hook in sys.path_hooks:
            try:
                finder = hook(path)
            except ImportError:
                continue
            finder.find_spec("__donjon_no_such_module__")  # reads the directory, once
            sys.path_importer_cache[path] = finder
            break
        else:
            sys.path_importer_cache[path] = None  # as importlib records a path no hook takes


def _load_handler(config: dict[str, Any]) -> Any:
    sys.path[:0] = BUNDLE_PATH
    module = importlib.import_module(config["module"])
    # Missing, not callable or the wrong arity: the deploy's prestart reports it.
    return check_handler(module, config["module"], config["function"])


def end_leftovers() -> None:
    """Kill and reap every other process of this pid namespace (this worker is its pid 1).

    kill(-1) reaches each of them at once, so a chain of forks cannot slip
    past it. Called once the import is done and after each warm call: what
    they started ends with them. (A function that tampers with this is
    caught by the supervisor, which finds the processes left over.)

    Every process of the namespace descends from this one (an orphan is
    adopted by it, pid 1), so when it has no child at all nothing else runs
    here, and the kill, whose cost grows with the host's process count, is
    not needed: one non-blocking wait says so (most warm calls start nothing).
    """
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return  # no child, so no process but this one in the namespace
    try:
        os.kill(-1, signals.SIGKILL)
    except ProcessLookupError:
        return  # nothing else runs here
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def may_make_children(config: dict[str, Any]) -> bool:
    """Whether this worker's code can start a process at all.

    With `child_processes: block` (the default) the kernel stops every fork,
    vfork, clone of a process and exec of the worker (clone3 fails ENOSYS, libc
    then uses clone) and the supervisor answers each with EPERM, or the kernel
    ENOSYS once no one holds the listener (watch.py, sandbox/seccomp.py): no call
    can leave a process behind or reap one, so a warm call skips
    `end_leftovers`' wait and the children's memory peak. With alert or allow,
    each call is followed by both.
    """
    policies = config.get("policies") or {}
    return bool(policies.get("child_processes", "block") != "block")


def line_buffered() -> None:
    """stdout flushed at each line, like stderr: what a call prints lands in order.

    Done once by the supervisor (startup.py) on the stream objects every worker
    inherits: a worker's `_only_descriptors` changes the descriptors under them,
    never the objects."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None:
            continue  # replaced: nothing of ours to order
        try:
            reconfigure(line_buffering=True)
        except (ValueError, OSError):
            pass


def _serve(handoff: sockets.Socket, config: dict[str, Any]) -> None:
    handoff = _only_descriptors(handoff)
    try:
        listener = _confine(config)
        if listener is not None:
            # To the supervisor before any function code runs; the function never holds it.
            sockets.send_fds(handoff, [b'{"op": "watch"}'], [listener])
            os.close(listener)
        if config.get("egress"):
            network.proxy_environment(os.environ)
        policies = config.get("policies") or {}
        call_watch = CallWatch(policies)  # its audit hook comes before the function's code
        handler = _load_handler(config)
        lambda_env.install_logging()  # the function's code may have imported `logging`
        if policies.get("read_own_code") == "block":
            hide_bundle(config["landlock"])
        end_leftovers()
    except BaseException as e:
        report = {"op": "failed", "error": f"{type(e).__name__}: {e}"[:2000], "trace": _trace()}
        handoff.send(jsonwire.dumps(report).encode())
        os._exit(72)
    # Until its call (or channel) comes, a ready worker runs no function code: a signal
    # handler the import armed a timer for waits, blocked, like a warm worker's between calls.
    mask = signals.pthread_sigmask(signals.SIG_BLOCK, signals.valid_signals())
    _say_ready(handoff)
    msg, fds = _next_message(handoff)
    signals.pthread_sigmask(signals.SIG_SETMASK, mask)
    if not msg or not fds:
        return
    if config["warm"]:
        # Warm: the gateway's persistent channel, handed over once; calls come on it.
        if msg == b"channel":
            leftovers = end_leftovers if may_make_children(config) else None
            serve_channel(sockets.Socket(fileno=fds[0]), handler, call_watch, leftovers)
        return
    handoff.close()  # one call only: nothing more will come
    call = sockets.Socket(fileno=fds[0])
    try:
        run_call(call, handler, call_watch)
    finally:
        call.close()


def _say_ready(handoff: sockets.Socket) -> None:
    """Report ready (and the capabilities held, none), then never speak again."""
    # capget(2), not /proc/self/status: the same effective set, without the kernel
    # writing and this process parsing the whole status file (0.2 ms a worker).
    caps = isolation.effective_capabilities()
    try:
        handoff.send(jsonwire.dumps({"op": "ready", "caps": caps}).encode())
        # From here the worker only listens: function code cannot speak to the supervisor.
        handoff.shutdown(sockets.SHUT_WR)
    except OSError:
        # Handed its call before it was ready, after its listener had arrived: the
        # supervisor stopped listening (its end is closed) and the call is queued here.
        # Nothing can be said on this socket any more, by this code or the function's.
        pass


def _next_message(handoff: sockets.Socket) -> tuple[bytes, list[int]]:
    """The next call handed over (a message and its descriptor); b"" at the end."""
    try:
        msg, fds, _flags, _addr = sockets.recv_fds(handoff, 16, 1)
    except ConnectionResetError:
        # The supervisor closed its end with our ready report unread (it had handed the
        # call first): the kernel says so once, then yields what is queued.
        msg, fds, _flags, _addr = sockets.recv_fds(handoff, 16, 1)
    return msg, fds


def start_worker(
    handoff: sockets.Socket,
    config: dict[str, Any],
    cgroup_fds: tuple[int, ...] | None = None,
    relay_control: sockets.Socket | None = None,
) -> int:
    """In a fresh fork of the supervisor: make the namespaces, fork the worker,
    wait for it (relaying its egress, if `relay_control`) and leave with its
    status. Never returns."""
    relay: Relay | None = None
    try:
        # Pid, mount, System V IPC and network namespaces of the worker's own:
        # nothing it starts, mounts, allocates in shared memory or listens on
        # outlives it or is reachable from another call.
        lowlevel.unshare(lowlevel.CLONE_NEWPID | lowlevel.CLONE_NEWNS | lowlevel.CLONE_NEWIPC)
        network.new_network()
        if cgroup_fds:
            # The call's memory is charged to it alone, its processes count against its share.
            isolation.join_cgroup(cgroup_fds)
        isolation.before_fork()
        if relay_control is not None:
            from .relay import Relay  # egress only: it brings selectors and socket

            relay = Relay(network.relay_listener(), relay_control, network.egress_dir_fd())
        pid = os.fork()
    except BaseException:
        os._exit(71)
    if pid == 0:
        code = 0
        try:
            _serve(handoff, config)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    code = 71
    try:  # this process is a fork of the supervisor: it must never return into its code
        handoff.close()
        # Its namespaces are made: it needs no capability to wait (or to relay the
        # worker's connections), so it keeps none.
        lowlevel.drop_all_capabilities(config["bounding"])
        status = _relay_then_wait(relay, pid) if relay is not None else _wait(pid)
        code = os.waitstatus_to_exitcode(status)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig != signals.SIGKILL:  # SIGKILL has no handler to reset
                signals.signal(sig, signals.SIG_DFL)
            os.kill(os.getpid(), sig)
    finally:
        os._exit(code & 0xFF)


def start_cloned(
    handoff: sockets.Socket, config: dict[str, Any], cgroup_fds: tuple[int, ...] | None
) -> None:
    """In the child of one clone(2) (clone.py): already pid 1 of its own pid, mount, IPC
    and network namespaces, it does what the intermediate parent of `start_worker` does
    for its worker (its cgroups, `lo` up, its OOM score, a read-only /proc, no ptys),
    then serves as that worker would. Never returns.

    Used for the workers of a function without egress, one-call and warm alike (a
    relay needs a parent outside the worker's namespaces: `start_worker`). The
    confinement is the same; the worker's parent is the supervisor itself, so its
    parent-death signal follows the supervisor.
    """
    try:
        network.loopback_up()
        if cgroup_fds:
            isolation.join_cgroup(cgroup_fds)
        isolation.before_fork()
    except BaseException:
        os._exit(71)
    code = 0
    try:
        _serve(handoff, config)
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _relay_then_wait(relay: Relay, pid: int) -> int:
    """Relay until the worker exits; should the relay fail, the worker loses its egress
    (the listener closes with it), never its parent."""
    try:
        return relay.wait(pid)
    except Exception:
        relay.close()
        return _wait(pid)


def _wait(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
