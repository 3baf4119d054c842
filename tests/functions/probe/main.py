"""A test function that does what the event asks, to observe the sandbox from inside."""

import os
import socket
import time

STATE = {"calls": 0}


def _caps():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return line.split()[1]
    return "?"


def handler(event, context):
    op = event.get("op")
    STATE["calls"] += 1
    if op == "read":
        with open(event["path"], "rb") as f:
            return {"data": f.read(4096).decode("latin-1")}
    if op == "listdir":
        return {"entries": sorted(os.listdir(event["path"]))}
    if op == "exists":
        return {"exists": os.path.exists(event["path"])}
    if op == "connect":
        try:
            socket.create_connection((event["host"], event["port"]), timeout=1).close()
            return {"connected": True}
        except OSError as e:
            return {"connected": False, "error": str(e)}
    if op == "pids":
        return {"pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
    if op == "env":
        return {"env": dict(os.environ)}
    if op == "write_tmp":
        with open(os.path.join("/tmp", event["name"]), "w") as f:
            f.write(event.get("data", "x"))
        return {"tmp": sorted(os.listdir("/tmp"))}
    if op == "state":
        return {"calls": STATE["calls"], "pid": os.getpid()}
    if op == "whoami":
        return {
            "uid": os.getuid(),
            "gid": os.getgid(),
            "caps": _caps(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "cwd": os.getcwd(),
        }
    if op == "fds":
        return {"fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd"))}
    if op == "print":
        print(event.get("text", ""))
        return {"printed": True}
    if op == "sleep":
        time.sleep(float(event["s"]))
        return {"slept": event["s"]}
    if op == "alloc":
        blob = bytearray(int(event["mb"]) * 1024 * 1024)
        return {"allocated": len(blob)}
    if op == "raise":
        raise RuntimeError("probe was asked to fail: " + event.get("text", ""))
    if op == "spawn":
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        return {"child": pid}
    if op == "context":
        return {
            "request_id": context.request_id,
            "function": context.function_name,
            "version": context.version,
            "principal": context.principal,
            "secrets": dict(context.secrets),
            "remaining": context.remaining_s() > 0,
        }
    if op == "rlimits":
        import resource

        return {
            name: resource.getrlimit(getattr(resource, name))
            for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_CORE")
        }
    if op == "echo":
        return event
    return {"unknown": op}
