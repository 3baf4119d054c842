"""A hostile function: each op is one attack on the sandbox, reported back as data.

Nothing here raises on a failed attack: the result says what was tried and
what the kernel answered, so the tests can assert on it.
"""

import _socket
import contextlib
import ctypes
import errno
import json
import os
import signal
import socket
import sys
import time

_libc = ctypes.CDLL(None, use_errno=True)
STATE = {"calls": 0, "marker": None}
KEPT = []  # descriptors and objects kept alive on purpose, across calls if the process lives

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
PTRACE_ATTACH = 16
PTRACE_DETACH = 17
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
WALL = 0x40000000  # __WALL: wait for a traced process that is not our child


def _err(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) else repr(e)


def _libc_result(rc):
    return "ok" if rc == 0 else errno.errorcode.get(ctypes.get_errno(), "?")


def _call_socket():
    """The runtime's socket for this call, found the way an attacker would: up the stack."""
    frame = sys._getframe(1)
    while frame is not None:
        sock = frame.f_locals.get("sock")
        if isinstance(sock, _socket.socket):  # the runtime's are _socket's own (sockets.py)
            return sock.fileno()
        frame = frame.f_back
    return -1


def _describe_fd(fd):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError as e:
        return {"target": _err(e)}
    out = {"target": target}
    if target.startswith("socket:"):
        try:
            s = socket.socket(fileno=os.dup(fd))
            out["family"] = int(s.family)
            out["type"] = int(s.type)
            s.close()
        except OSError as e:
            out["family"] = _err(e)
    return out


def op_read_many(event):
    out = {}
    for path in event["paths"]:
        try:
            if os.path.isdir(path):
                out[path] = {"listed": sorted(os.listdir(path))[:50]}
            else:
                with open(path, "rb") as f:
                    out[path] = {"read": f.read(256).decode("latin-1")}
        except OSError as e:
            out[path] = {"error": _err(e)}
    return out


def op_write_many(event):
    out = {}
    for path in event["paths"]:
        try:
            with open(path, "w") as f:
                f.write(event.get("data", "sec-attack was here"))
            out[path] = "written"
        except OSError as e:
            out[path] = _err(e)
    return out


def op_exists_many(event):
    return {p: os.path.lexists(p) for p in event["paths"]}


def op_processes(event):
    out, comms = {}, {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    out[p] = f.read().replace(b"\0", b" ").decode("latin-1").strip()
                with open(f"/proc/{p}/comm") as f:
                    comms[p] = f.read().strip()
            except OSError as e:
                out[p] = _err(e)
    return {"me": os.getpid(), "processes": out, "comms": comms}


def op_fds(event):
    call = _call_socket()
    fds = {int(fd): None for fd in os.listdir("/proc/self/fd")}
    return {
        "call_socket": call,
        "fds": {
            str(fd): _describe_fd(fd) for fd in sorted(fds) if os.path.exists(f"/proc/self/fd/{fd}")
        },
    }


def op_connect(event):
    kind = socket.SOCK_DGRAM if event.get("proto") == "udp" else socket.SOCK_STREAM
    try:
        s = socket.socket(socket.AF_INET, kind)
        s.settimeout(2)
        if kind == socket.SOCK_DGRAM:
            s.sendto(event.get("payload", "sec-attack").encode(), (event["host"], event["port"]))
            s.close()
            return {"sent": True}
        s.connect((event["host"], event["port"]))
        s.sendall(event.get("payload", "sec-attack").encode())
        s.close()
        return {"connected": True}
    except OSError as e:
        return {"connected": False, "sent": False, "error": _err(e)}


def op_resolve(event):
    out = {}
    for name in event["names"]:
        try:
            out[name] = sorted({ai[4][0] for ai in socket.getaddrinfo(name, 80)})
        except OSError as e:
            out[name] = f"error: {e}"
    return out


def op_interfaces(event):
    try:
        out = {"interfaces": [name for _, name in socket.if_nameindex()]}
    except OSError as e:
        out = {"interfaces": _err(e)}
    with open("/proc/self/net/dev") as f:
        out["net_dev"] = [line.split(":")[0].strip() for line in f if ":" in line]
    for label, args in {
        "packet": (socket.AF_PACKET, socket.SOCK_RAW, 0x0300),
        "raw_ip": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
    }.items():
        try:
            socket.socket(*args).close()
            out[label] = "opened"
        except OSError as e:
            out[label] = _err(e)
    return out


def op_open_for_write(event):
    """Open each path for writing and close it again: the open is the proof, nothing is written."""
    out = {}
    for path in event["paths"]:
        try:
            os.close(os.open(path, os.O_WRONLY))
            out[path] = "opened"
        except OSError as e:
            out[path] = _err(e)
    return out


def op_chmod_same(event):
    """chmod each path to the mode it already has: a no-op change that proves ownership."""
    import stat

    out = {}
    for path in event["paths"]:
        try:
            os.chmod(path, stat.S_IMODE(os.stat(path).st_mode))
            out[path] = "changed"
        except OSError as e:
            out[path] = _err(e)
    return out


def op_identity(event):
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in (
                "Uid",
                "Gid",
                "CapInh",
                "CapPrm",
                "CapEff",
                "CapBnd",
                "CapAmb",
                "NoNewPrivs",
                "Seccomp",
            ):
                status[key] = value.split()
    with open("/proc/self/uid_map") as f:
        uid_map = [line.split() for line in f if line.strip()]
    with open("/proc/self/gid_map") as f:
        gid_map = [line.split() for line in f if line.strip()]
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "status": status,
        "uid_map": uid_map,
        "gid_map": gid_map,
        "hostname": socket.gethostname(),
        "env": dict(os.environ),
    }


def op_unshare(event):
    flags = {"user": CLONE_NEWUSER, "mount": CLONE_NEWNS, "net": CLONE_NEWNET, "pid": CLONE_NEWPID}
    out = {}
    for name, flag in flags.items():
        pid = os.fork()  # try in a throwaway child, so a success changes nothing here
        if pid == 0:
            rc = _libc.unshare(flag)
            os._exit(0 if rc == 0 else 100 + ctypes.get_errno())
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        out[name] = "ok" if code == 0 else errno.errorcode.get(code - 100, str(code))
    if hasattr(os, "unshare"):  # Python 3.12+
        pid = os.fork()
        if pid == 0:
            try:
                os.unshare(os.CLONE_NEWUSER)
                os._exit(0)
            except OSError as e:
                os._exit(100 + e.errno)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        out["os.unshare(CLONE_NEWUSER)"] = "ok" if code == 0 else errno.errorcode.get(code - 100)
    return out


def op_mount(event):
    os.makedirs("/tmp/sec-mnt", exist_ok=True)
    out = {"tmpfs": _libc_result(_libc.mount(b"tmpfs", b"/tmp/sec-mnt", b"tmpfs", 0, None))}
    # MS_REMOUNT | MS_BIND: make the read-only bundle writable again
    out["remount_fn_rw"] = _libc_result(_libc.mount(None, b"/fn", None, 32 | 4096, None))
    return out


def _other_pids():
    """Every pid /proc shows and the first few of any namespace, but this process's own:
    a /proc that shows none (a worker's own) must not leave the attacks without targets."""
    shown = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    return sorted((shown | set(range(1, 17))) - {os.getpid()})


def op_ptrace(event):
    out = {}
    for pid in _other_pids():
        p = str(pid)
        rc = _libc.ptrace(PTRACE_ATTACH, pid, None, None)
        if rc == 0:
            out[p] = "attached"
            os.waitpid(pid, WALL)
            _libc.ptrace(PTRACE_DETACH, pid, None, None)
        else:
            out[p] = errno.errorcode.get(ctypes.get_errno(), "?")
    return out


def op_proc_mem(event):
    """Open the memory of every other visible process read-write (code injection without ptrace)."""
    out = {}
    for p in map(str, _other_pids()):
        try:
            os.close(os.open(f"/proc/{p}/mem", os.O_RDWR))
            out[p] = "opened"
        except OSError as e:
            out[p] = _err(e)
    return out


def op_kill(event):
    out = {}
    for pid in event["pids"]:
        try:
            os.kill(int(pid), int(event.get("signal", 0)))
            out[str(pid)] = "delivered"
        except OSError as e:
            out[str(pid)] = _err(e)
    return out


def op_control_channel(event):
    """Find any SOCK_SEQPACKET socket (the runtime's control channel) and forge a message on it."""
    forged = json.dumps({"op": "exit", "id": -1, "status": "forged-by-handler"}).encode()
    out = {}
    for fd in sorted(int(x) for x in os.listdir("/proc/self/fd")):
        desc = _describe_fd(fd)
        if desc.get("type") == socket.SOCK_SEQPACKET:
            s = socket.socket(fileno=os.dup(fd))
            try:
                s.send(forged)
                out[str(fd)] = "sent"
            except OSError as e:
                out[str(fd)] = _err(e)
            finally:
                s.close()
    return {"seqpacket_sockets": out}


def op_spawn_orphan(event):
    """Fork a grandchild that renames itself and outlives this call (double fork, new session)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        _libc.prctl(PR_SET_NAME, event["name"].encode(), 0, 0, 0)
        os.write(w, str(os.getpid()).encode())
        for fd in range(3, 256):
            with contextlib.suppress(OSError):
                os.close(fd)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(float(event.get("sleep", 20)))
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    grandchild = int(os.read(r, 32))
    os.close(r)
    return {"orphan": grandchild}


def op_garbage_fds(event):
    """Write garbage to every descriptor but the call socket, then close stdout and stderr."""
    call = _call_socket()
    out = {}
    for fd in sorted(int(x) for x in os.listdir("/proc/self/fd")):
        if fd in (call, 0):
            continue
        try:
            os.write(fd, b"\x00\xff\xff\xff\xffGARBAGE" * 64)
            out[str(fd)] = "written"
        except OSError as e:
            out[str(fd)] = _err(e)
    if event.get("close_std"):
        os.close(1)
        os.close(2)
    return out


def op_fake_reply(event):
    """Write a forged reply on the call socket before the runtime writes the real one."""
    call = _call_socket()
    head = json.dumps({"ok": True, "out": "forged"}).encode()
    body = json.dumps({"forged": True}).encode()
    frames = b"".join(len(p).to_bytes(4, "big") + p for p in (head, body))
    if event.get("trailing_garbage"):
        frames += b"\xff\xff\xff\xff" + b"A" * 64
    os.write(call, frames)
    return {"real": True}


def _spin_child(name, seconds, port=None):
    """Fork a child named `name` that spins (and listens on loopback `port`) for `seconds`."""
    pid = os.fork()
    if pid != 0:
        return pid
    try:
        _libc.prctl(PR_SET_NAME, name.encode(), 0, 0, 0)
        listener = None
        if port is not None:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(8)
            listener.setblocking(False)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if listener is not None:
                with contextlib.suppress(OSError):
                    conn, _ = listener.accept()
                    conn.sendall(b"still here")
                    conn.close()
            for _ in range(100_000):
                pass
    finally:
        os._exit(0)


def op_linger(event):
    """Clear the parent-death signal, answer on the call socket at once, and keep running.

    Two children named `name` spin (one listening on loopback `port`) and the
    handler itself never returns on its own: only the platform can end them.
    """
    cleared = _libc_result(_libc.prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0))
    seconds = float(event.get("seconds", 90))
    kids = [
        _spin_child(event["name"], seconds, event.get("port")),
        _spin_child(event["name"], seconds),
    ]
    head = json.dumps({"ok": True, "out": ""}).encode()
    body = json.dumps({"pdeathsig_cleared": cleared, "children": kids}).encode()
    os.write(_call_socket(), b"".join(len(p).to_bytes(4, "big") + p for p in (head, body)))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.2)
    return {"late": True}


def op_loopback_answers(event):
    """Connect to a loopback port: does anything of an earlier call still answer there?"""
    try:
        with socket.create_connection(("127.0.0.1", int(event["port"])), timeout=2) as s:
            return {"answered": s.recv(64).decode("latin-1")}
    except OSError as e:
        return {"answered": None, "error": _err(e)}


def op_cgroup(event):
    """What the function sees of its cgroups."""
    with open("/proc/self/cgroup") as f:
        return {"cgroup": f.read()}


def op_fail_loudly(event):
    """Print a lot, then fail: how much of it does the platform store?"""
    chunk = "y" * 1023 + "\n"
    for _ in range(int(event.get("kb", 1024))):
        sys.stdout.write(chunk)
    raise RuntimeError("failing after printing " + "z" * int(event.get("error_chars", 1500)))


def op_keep_state(event):
    """Leave traces everywhere a later call could look."""
    STATE["marker"] = event["marker"]
    written = op_write_many({"paths": event["paths"], "data": event["marker"]})
    fd = os.open("/fn/main.py", os.O_RDONLY)
    os.set_inheritable(fd, True)
    KEPT.append(fd)
    return {"pid": os.getpid(), "fd": fd, "written": written}


def op_find_state(event):
    found = {}
    for path in event["paths"]:
        try:
            with open(path) as f:
                found[path] = f.read()
        except OSError:
            pass
    fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
    held = {}
    for fd in fds:
        with contextlib.suppress(OSError):
            held[str(fd)] = os.readlink(f"/proc/self/fd/{fd}")
    return {
        "pid": os.getpid(),
        "global": STATE["marker"],
        "calls": STATE["calls"],
        "files": found,
        "fds": held,
    }


def op_huge(event):
    return {"blob": "x" * int(event["mb"] * 1024 * 1024)}


def op_not_json(event):
    kind = event["kind"]
    if kind == "set":
        return {1, 2, 3}
    if kind == "nan":
        return {"x": float("nan")}
    if kind == "object":
        return object()
    if kind == "bytes":
        return b"\x00\x01"
    if kind == "circular":
        loop = []
        loop.append(loop)
        return loop
    return {"kind": kind}


def op_ignore_input(event):
    return {"ignored": True}


def op_import(event):
    """Try to import packages that exist only on the host (its site-packages, Donjon itself)."""
    import importlib

    out = {}
    for name in event["modules"]:
        try:
            module = importlib.import_module(name)
            out[name] = getattr(module, "__file__", None) or "imported"
        except ImportError as e:
            out[name] = f"error: {type(e).__name__}"
    return out


def op_run(event):
    """Run a program from the sandbox's /usr (unshare, mount, ...) and report how it ended."""
    import subprocess

    try:
        done = subprocess.run(event["argv"], capture_output=True, text=True, timeout=5, check=False)
    except OSError as e:
        return {"rc": None, "error": _err(e)}
    return {"rc": done.returncode, "stdout": done.stdout[-2000:], "stderr": done.stderr[-2000:]}


def op_echo(event):
    return event


OPS = {name[3:]: fn for name, fn in list(globals().items()) if name.startswith("op_")}


def handler(event, context):
    STATE["calls"] += 1
    return OPS[event["op"]](event)
