"""Wake-ups per call of a worker that sleeps in `recv`, against one that polls first.

    python bench/worker_wakeups.py [--calls 2000]

A warm worker reads its calls from, and writes its replies to, one unix stream
socket (sandbox/runtime/call.py). When the caller reads a reply, the kernel
frees the reply's buffer and wakes the sleepers on the worker socket's wait
queue to say it may write (`unix_write_space`). A worker asleep in `recv`
wakes, finds no data and sleeps again: two voluntary context switches a call.
`poll(POLLIN)` waits with a keyed entry that the write-space wake-up passes by;
replies on a socket of their own leave nobody asleep where that wake-up lands.
This script shows the three on this kernel, with a forked worker and a caller
that reads each reply only once the worker is back asleep (as the gateway's loop
usually does); it prints the worker's voluntary context switches and its CPU
(/proc/PID/schedstat, ns on the CPU) per call, and the caller's own CPU per call
(sleeps included, the same in every mode). `ahead` sends the calls two at a time,
as a gateway sending calls ahead to a busy warm instance would: the worker finds the
next call waiting when it has answered one, and does not sleep between the two.
docs/performance.md, "The warm path's floor", "The warm worker: one wake-up per call"
and "the twenty-first round".
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import time

MODES = {
    "recv": "recv alone",
    "poll": "poll(POLLIN), then recv",
    "split": "replies on their own socket",
    "ahead": "poll, the next call sent ahead",
}


def _worker(calls: socket.socket, replies: socket.socket, use_poll: bool) -> None:
    poller = select.poll()
    poller.register(calls, select.POLLIN)
    while True:
        if use_poll:
            poller.poll()
        if not calls.recv(100):  # one call (the calls are 100 bytes)
            os._exit(0)
        replies.sendall(b"r" * 200)


def _ahead(sock: socket.socket, calls: int) -> None:
    """Calls sent two at a time, as a gateway sending calls ahead to a busy instance
    would: the worker finds the second in its socket when it has answered the first."""
    answered = 0
    while answered < calls:
        sock.send(b"x" * 100)
        sock.send(b"x" * 100)
        time.sleep(0.0002)
        got = 0
        while got < 400:  # two replies of 200 bytes
            got += len(sock.recv(65536))
        answered += 2
        time.sleep(0.0002)


def _switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def _cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def per_call(mode: str, calls: int) -> tuple[float, float, float]:
    """Voluntary switches and µs of CPU per call of a worker in `mode`, and the caller's."""
    ours, theirs = socket.socketpair()
    back, out = socket.socketpair() if mode == "split" else (ours, theirs)
    pid = os.fork()
    if pid == 0:
        ours.close()
        _worker(theirs, out, mode in ("poll", "ahead"))
    theirs.close()
    try:
        ours.send(b"x")
        back.recv(65536)
        before, cpu, mine = _switches(pid), _cpu_ns(pid), time.thread_time_ns()
        if mode == "ahead":  # two calls at a time: the second waits in the socket
            _ahead(ours, calls)
        for _ in range(calls if mode != "ahead" else 0):
            ours.send(b"x" * 100)
            time.sleep(0.0002)  # the worker answers and is back asleep
            back.recv(65536)  # frees the reply's buffer: the write-space wake-up
            time.sleep(0.0002)
        mine = time.thread_time_ns() - mine
        cpu = _cpu_ns(pid) - cpu
        return (_switches(pid) - before) / calls, cpu / calls / 1000, mine / calls / 1000
    finally:
        ours.close()
        if back is not ours:
            back.close()
            out.close()
        os.waitpid(pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    for mode in (*MODES, *MODES):
        switches, cpu, caller = per_call(mode, args.calls)
        print(
            f"{MODES[mode]:31} {switches:.2f} voluntary switches, {cpu:5.1f} µs CPU per call"
            f" (the caller's: {caller:5.1f} µs)"
        )


if __name__ == "__main__":
    main()
