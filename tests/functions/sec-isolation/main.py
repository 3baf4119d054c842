"""A hostile function: calls that attack each other and the host's shared kernel counters.

Each op reports what was tried and what the kernel answered; nothing here raises
on a failed attack, so the tests can assert on the result.
"""

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import time

_libc = ctypes.CDLL(None, use_errno=True)
KEPT = []
SYS_IO_SETUP = 206
SYS_INOTIFY_INIT1 = 294
SYS_PIDFD_SEND_SIGNAL = 424


def _err(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) else repr(e)


def _try(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return _err(e)


def _hold(marker, seconds):
    """Call B: a secret file in /tmp, an abstract socket, a subprocess that sleeps."""
    with open(f"/tmp/secret-{marker}", "w") as f:
        f.write("secret of B " + marker)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"\0donjon-iso-{marker}")
    listener.listen(8)
    listener.setblocking(False)
    sys.stdout.write(f"B starts {marker}\n")
    sys.stdout.flush()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(float(__import__('sys').argv[1]))",
            str(seconds),
            f"hold-{marker}",
        ],
        env={"SECRET": f"env-secret-{marker}"},
        stdout=None,
        stderr=None,
    )
    child.wait()
    accepted = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            break
        conn.close()
        accepted += 1
    size = os.lseek(1, 0, os.SEEK_END)
    output = os.pread(1, size, 0).decode(errors="replace")
    return {
        "planted_seen": os.path.exists(f"/tmp/planted-{marker}"),
        "output": output,
        "accepted": accepted,
        "child_rc": child.returncode,
    }


def _peek_one(pid, marker):
    base = f"/proc/{pid}"
    out = {}
    out["root"] = _try(lambda: os.listdir(f"{base}/root/tmp"))

    def plant():
        with open(f"{base}/root/tmp/planted-{marker}", "w") as f:
            f.write("planted by A")

    out["plant"] = _try(plant)

    def forge():
        fd = os.open(f"{base}/fd/1", os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, f"FORGED by A {marker}\n".encode())
        finally:
            os.close(fd)

    out["fd1"] = _try(forge)

    def environ():
        with open(f"{base}/environ", "rb") as f:
            if f.read():
                out["environ_bytes"] = True

    out["environ"] = _try(environ)

    def mem():
        fd = os.open(f"{base}/mem", os.O_RDONLY)
        os.close(fd)

    out["mem"] = _try(mem)
    # (kill(2) takes pids of the call's own pid namespace, where no other call's
    # process has one; a /proc/<pid> directory, though, is a pidfd.)

    def pidfd_signal():
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)  # a /proc/<pid> dir is a pidfd
        try:
            if _libc.syscall(SYS_PIDFD_SEND_SIGNAL, fd, signal.SIGCONT, None, 0) != 0:
                raise OSError(ctypes.get_errno(), "pidfd_send_signal")
        finally:
            os.close(fd)

    out["pidfd_signal"] = _try(pidfd_signal)
    return out


def _own_family():
    """This process and its children: not 'other' processes."""
    try:
        me = int(os.readlink("/proc/self"))  # as this /proc numbers it, not as getpid() does
    except OSError:
        return set()  # a /proc of this worker's own (no Landlock): no pid shows at all
    mine = {me}
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            mine |= {int(p) for p in f.read().split()}
    except OSError:
        pass
    return mine


def _peek(marker, wait_s):
    """Call A: every other process it can see, through /proc; and B's abstract socket."""
    deadline = time.monotonic() + wait_s
    found = []
    while True:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        found = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f"hold-{marker}".encode() in f.read():
                        found.append(pid)
            except OSError:
                continue
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    mine = _own_family()
    results = {str(pid): _peek_one(pid, marker) for pid in pids if pid not in mine}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract = _try(lambda: sock.connect(f"\0donjon-iso-{marker}"))
    sock.close()
    return {"found": found, "results": results, "abstract": abstract, "pids_visible": bool(pids)}


def _fill(mb):
    """Kernel memory no RSS shows: full socket buffers and memfd pages, up to `mb` MiB."""
    target = mb << 20
    held = {"socket": 0, "memfd": 0}
    stops = {}
    chunk = b"x" * (1 << 16)
    while held["socket"] < target // 2:
        try:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            KEPT.extend((a, b))
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 20)
            b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
            a.setblocking(False)
            before = held["socket"]
            while True:
                try:
                    held["socket"] += a.send(chunk)
                except BlockingIOError:
                    break
            if held["socket"] == before:
                stops["socket"] = "no room"
                break
        except OSError as e:
            stops["socket"] = _err(e)
            break
    while held["memfd"] < target - held["socket"]:
        try:
            fd = os.memfd_create("fill", 0)
            KEPT.append(fd)
            for _ in range(64):
                held["memfd"] += os.write(fd, chunk * 16)
        except OSError as e:
            stops["memfd"] = _err(e)
            break
    return {"held": held, "stops": stops}


def _tcp_fill(mb):
    """Loopback TCP connections whose buffers hold up to `mb` MiB, nobody reading."""
    target = mb << 20
    held, stop = 0, None
    server = socket.socket()
    KEPT.append(server)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    chunk = b"x" * (1 << 16)
    while held < target and stop is None:
        try:
            client = socket.create_connection(server.getsockname())
            peer, _ = server.accept()
        except OSError as e:
            stop = _err(e)
            break
        KEPT.extend((client, peer))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 20)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        client.setblocking(False)
        before = held
        deadline = time.monotonic() + 2
        while held < target and time.monotonic() < deadline:
            try:
                held += client.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)  # the peer's window may still open; then move on
                try:
                    held += client.send(chunk)
                except BlockingIOError:
                    break
            except OSError as e:
                stop = _err(e)
                break
        if held == before:
            stop = stop or "no room"
    return {"held": held, "stop": stop}


def _io_setup():
    ctx = ctypes.c_ulong(0)
    rc = _libc.syscall(SYS_IO_SETUP, 4096, ctypes.byref(ctx))
    return "ok" if rc == 0 else errno.errorcode.get(ctypes.get_errno(), "?")


def _ptys():
    out = {}
    for path in ("/dev/ptmx", "/dev/pts/ptmx"):
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        except OSError as e:
            out[path] = _err(e)
            continue
        try:
            import fcntl
            import struct

            n = struct.unpack("I", fcntl.ioctl(fd, 0x80045430, b"\0" * 4))[0]  # TIOCGPTN
            out[path] = f"pty {n}"
        except OSError as e:
            out[path] = "opened, " + _err(e)
        os.close(fd)
    return out


def _inotify(limit):
    count, stop = 0, None
    while count < limit:
        fd = _libc.syscall(SYS_INOTIFY_INIT1, os.O_CLOEXEC)
        if fd < 0:
            stop = errno.errorcode.get(ctypes.get_errno(), "?")
            break
        KEPT.append(fd)
        count += 1
    return {"count": count, "stop": stop}


def handler(event, context):
    op = event.get("op")
    if op == "hold":
        return _hold(event["marker"], float(event.get("seconds", 50)))
    if op == "peek":
        return _peek(event["marker"], float(event.get("wait_s", 20)))
    if op == "fill":
        result = _fill(int(event["mb"]))
        time.sleep(float(event.get("keep_s", 0)))
        return result
    if op == "tcp_fill":
        return _tcp_fill(int(event["mb"]))
    if op == "sleep":
        time.sleep(float(event["s"]))
        return {"slept": event["s"]}
    if op == "io_setup":
        return {"io_setup": _io_setup()}
    if op == "ptys":
        return _ptys()
    if op == "inotify":
        result = _inotify(int(event.get("limit", 4096)))
        time.sleep(float(event.get("keep_s", 0)))
        return result
    if op == "ids":
        return {"uid": os.getuid(), "pid": os.getpid()}
    return {"ok": True}
