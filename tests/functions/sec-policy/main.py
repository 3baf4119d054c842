"""What the runtime policies watch: processes, /tmp writes, reading the bundle."""

import ctypes
import errno
import os
import subprocess
import threading


def _errno(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e.errno))


def op_subprocess(event):
    done = subprocess.run(["/usr/bin/true"], check=False)
    return {"ran": done.returncode}


def op_fork(event):
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    return {"ran": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}


def op_posix_spawn(event):
    pid = os.posix_spawn("/usr/bin/true", ["true"], {})
    return {"ran": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}


def op_exec(event):
    # Replaces the worker (the call would end unanswered): what child_processes refuses.
    os.execv("/usr/bin/true", ["true"])  # noqa: S606 - the attack under test


def op_raw_clone(event):
    """clone(SIGCHLD) by the raw system call, past libc and Python (x86_64 numbers)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    pid = libc.syscall(56, 17, 0, 0, 0, 0)  # SYS_clone, SIGCHLD: a plain fork
    if pid == 0:
        os._exit(3)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone")
    return {"ran": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}


def op_raw_clone3(event):
    """clone3 carries its flags in memory; the filter answers ENOSYS to every clone3."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    args = (ctypes.c_uint64 * 11)(0, 0, 0, 0, 17)  # flags 0, exit_signal SIGCHLD
    pid = libc.syscall(435, ctypes.byref(args), ctypes.sizeof(args))
    if pid == 0:
        os._exit(3)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone3")
    return {"ran": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}


def op_fork_then_die(event):
    """Try a child process, then end the worker without any reply of its own."""
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(3)
        os.waitpid(pid, 0)
    except OSError:
        pass
    os._exit(1)


def op_thread(event):
    box = []
    t = threading.Thread(target=lambda: box.append(1))
    t.start()
    t.join()
    return {"ran": len(box)}


def op_write_tmp(event):
    with open("/tmp/note", "w") as f:  # the call's own /tmp: what tmp_write watches
        f.write("x")
    return {"ran": 0}


def op_write_shm(event):
    with open("/dev/shm/note", "w") as f:
        f.write("x")
    return {"ran": 0}


def op_read_code(event):
    with open("/fn/main.py") as f:
        return {"ran": len(f.read())}


def op_read_code_relative(event):
    with open("main.py") as f:  # the worker's working directory is /fn
        return {"ran": len(f.read())}


def op_list_code(event):
    return {"ran": len(os.listdir("/fn"))}


def op_read_proc_root(event):
    with open("/proc/self/root/fn/main.py") as f:
        return {"ran": len(f.read())}


def handler(event, context):
    try:
        return globals()["op_" + event["op"]](event)
    except OSError as e:
        return {"refused": _errno(e)}
