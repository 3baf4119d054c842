"""A test function that abuses resources: processes, disk, CPU."""

import errno
import os
import time


def handler(event, context):
    op = event.get("op")
    if op == "forkbomb":
        count = 0
        while count < 10_000:
            try:
                pid = os.fork()
            except OSError as e:
                time.sleep(float(event.get("hold", 0)))  # keep the process table full
                return {"forked": count, "stopped_by": errno.errorcode.get(e.errno, e.errno)}
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            count += 1
        return {"forked": count, "stopped_by": None}
    if op == "fill_tmp":
        written = 0
        chunk = b"x" * (1 << 20)
        try:
            with open("/tmp/fill", "wb") as f:
                while written < (1 << 30):
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
        except OSError as e:
            return {"written": written, "stopped_by": errno.errorcode.get(e.errno, e.errno)}
        return {"written": written, "stopped_by": None}
    if op == "shm_make":
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        shmid = libc.shmget(0, 1 << 20, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
        return {"shmid": shmid}
    if op == "shm_list":
        with open("/proc/sysvipc/shm") as f:
            return {"segments": f.read().splitlines()[1:]}
    if op == "sleep":
        if event.get("fork"):  # a call that needs a process of its own to do its work
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        time.sleep(float(event["s"]))
        return {"slept": event["s"]}
    if op == "spin":
        while True:
            pass
    return {"ok": True}
