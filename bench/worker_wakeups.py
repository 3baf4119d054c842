"""Wake-ups per call of a worker that sleeps in `recv`, against one that polls first.

    python bench/worker_wakeups.py [--calls 2000]

A warm worker reads its calls from, and writes its replies to, one unix stream
socket (sandbox/runtime/call.py). When the caller reads a reply, the kernel
frees the reply's buffer and wakes the sleepers on the worker socket's wait
queue to say it may write (`unix_write_space`). A worker asleep in `recv`
wakes, finds no data and sleeps again: two voluntary context switches a call.
`poll(POLLIN)` waits with a keyed entry that the write-space wake-up passes by.
This script shows both on this kernel, with a forked worker and a caller that
reads each reply only once the worker is back asleep (as the gateway's loop
usually does); it prints the worker's voluntary context switches per call from
/proc. docs/performance.md, "The warm path's floor".
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import time


def _worker(sock: socket.socket, use_poll: bool) -> None:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    while True:
        if use_poll:
            poller.poll()
        if not sock.recv(65536):
            os._exit(0)
        sock.sendall(b"r" * 200)


def _switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def per_call(use_poll: bool, calls: int) -> float:
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        _worker(theirs, use_poll)
    theirs.close()
    try:
        ours.send(b"x")
        ours.recv(65536)
        before = _switches(pid)
        for _ in range(calls):
            ours.send(b"x" * 100)
            time.sleep(0.0002)  # the worker answers and is back asleep
            ours.recv(65536)  # frees the reply's buffer: the write-space wake-up
            time.sleep(0.0002)
        return (_switches(pid) - before) / calls
    finally:
        ours.close()
        os.waitpid(pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    for use_poll in (False, True, False, True):
        how = "poll(POLLIN), then recv" if use_poll else "recv alone"
        print(f"{how:24} {per_call(use_poll, args.calls):.2f} voluntary switches per call")


if __name__ == "__main__":
    main()
