"""`IsolatedScanner`: the deploy-time scan, run outside the node's process.

A scan reads untrusted code and text; whatever it costs must be paid by a process
that may die. The node starts one scan helper (`donjon.scan.worker`) that loads the
advisory database once; every scan then runs in a process forked from it with a memory
(address-space) limit, a CPU-time limit and a wall-clock timeout, and returns its
report as JSON. A scan that hits a limit fails closed with `ScanLimitExceeded`; the
node keeps serving. If the helper itself stops answering it is killed (with its scan)
and started again on the next scan.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donjon._subprocess import CommandError, start
from donjon.egress.addresses import IPNetwork
from donjon.scan.errors import ScanError
from donjon.scan.format.json import parse_json_report
from donjon.scan.model import ScanReport

__all__ = ["MAX_REPLY_BYTES", "IsolatedScanner", "ScanLimitExceeded", "ScanLimits"]

#: The largest report the helper relays; a bigger one is refused, not buffered. Here,
#: not in worker.py: the helper runs as `python -m donjon.scan.worker`, which must not
#: be imported by its own package first (runpy would run it twice, and warns).
MAX_REPLY_BYTES = 32 * 1024 * 1024

log = logging.getLogger("donjon")

_MAX_HEADER = 4096
#: All the scan helper is given of the node's environment. It reads untrusted bundles,
#: and the node's environment may hold credentials a scan has no use for (a database
#: URL with its password, a Redis URL, cloud keys for storage events): a scan that a
#: bundle subverts finds none of them in its own /proc/self/environ.
HELPER_ENV = ("PATH", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE")
_HINT = (
    "simplify the bundle (smaller modules, fewer generated constants); the gate does "
    "not pass code it could not finish scanning"
)


class ScanLimitExceeded(ScanError):
    """A deploy-time scan hit its memory, CPU or time limit: the bundle is refused."""

    title = "Deploy scan limit exceeded"


@dataclass(frozen=True)
class ScanLimits:
    """What one deploy-time scan may use."""

    timeout_s: float = 60.0
    cpu_s: int = 60
    #: Address space the scan process may add to what the helper already maps.
    memory_mb: int = 1024
    #: How long the helper may take to start (it loads the advisory database).
    start_timeout_s: float = 120.0


class IsolatedScanner:
    """Runs scans in a helper process; thread-safe, one scan at a time."""

    def __init__(
        self,
        advisories: Path | None = None,
        limits: ScanLimits | None = None,
        *,
        cache_dir: Path | None = None,
        egress_networks: Sequence[IPNetwork] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.advisories = advisories
        #: Variables the helper gets beyond HELPER_ENV's: none in the node; the tests of
        #: the helper give it coverage's, so that a coverage run measures it.
        self.environ = dict(environ or {})
        #: The node's DONJON_EGRESS_ALLOW_NETWORKS: DJ-MF-002 judges grants as its proxy.
        self.egress_networks = tuple(egress_networks)
        #: Where the helper keeps the parsed advisory database (`AdvisoryDB.load`).
        self.cache_dir = cache_dir
        self.limits = limits or ScanLimits()
        self.advisories_loaded = 0
        self._proc: subprocess.Popen[bytes] | None = None
        #: Whether `_proc` has said it is ready (`spawn` starts it without waiting).
        self._ready = False
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------
    def spawn(self) -> None:
        """Start the helper without waiting for it: its load of the advisories runs while
        the caller goes on; `start` (or the first scan) then waits for it to be ready."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._spawn()

    def start(self) -> None:
        """Start the helper (unless `spawn` did) and wait until it has loaded the
        advisories; `ScanError` if it does not."""
        with self._lock:
            self._ensure_started()

    def close(self, *, kill: bool = False) -> None:
        """End the helper: it ends when its input does (up to 5 s), or at once with `kill`
        (a helper no one will wait for: it may still be loading the advisories)."""
        with self._lock:
            self._stop(kill=kill)

    @property
    def pid(self) -> int | None:
        """The helper's process id while it runs (for tests and `donjon doctor`)."""
        return self._proc.pid if self._proc is not None else None

    def _ensure_started(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        # A helper that was ready and died is replaced; one not ready yet is read even if
        # it has exited: its report of why it could not start is in the pipe.
        if proc is None or (self._ready and proc.poll() is not None):
            proc = self._spawn()
        if self._ready:
            return proc
        try:
            header, body = self._read_reply(proc, self.limits.start_timeout_s)
        except ScanError:
            self._stop(kill=True)  # not left loading: the next scan starts a new helper
            raise
        if header.get("outcome") != "ready":
            self._stop(kill=True)
            problem = _json_object(body)
            raise ScanError(
                str(problem.get("message", "the scan helper did not start")),
                hint=str(problem.get("hint", "")),
            )
        self.advisories_loaded = int(header.get("detail") or 0)
        self._ready = True
        return proc

    def _spawn(self) -> subprocess.Popen[bytes]:
        """A new helper in place of any old one; its ready report is not read yet."""
        self._stop(kill=True)
        argv: list[str | Path] = [sys.executable, "-I", "-m", "donjon.scan.worker"]
        if self.advisories is not None:
            argv += ["--advisories", self.advisories]
            if self.cache_dir is not None:
                argv += ["--cache-dir", self.cache_dir]
        try:
            proc = start(
                argv,
                env={
                    **{k: v for k in HELPER_ENV if (v := os.environ.get(k)) is not None},
                    **self.environ,
                },
                hint="the deploy-time scan runs in a helper process",
            )
        except CommandError as e:
            raise ScanError(e.message, hint=e.hint) from e
        self._proc = proc
        return proc

    def _stop(self, *, kill: bool) -> None:
        proc, self._proc = self._proc, None
        self._ready = False
        if proc is None:
            return
        if not kill and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # the helper ends when its input does
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the helper and its scan
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    # -- scanning -----------------------------------------------------------------------
    def scan(self, tree: Path) -> ScanReport:
        """Scan `tree` in a limited process; `ScanLimitExceeded` if it hits a limit."""
        limits = self.limits
        request = {
            "path": str(tree),
            "timeout_s": limits.timeout_s,
            "cpu_s": limits.cpu_s,
            "memory_mb": limits.memory_mb,
            "egress_networks": [str(n) for n in self.egress_networks],
        }
        with self._lock:
            proc = self._ensure_started()
            try:
                if proc.stdin is None:
                    raise ScanError("the scan helper has no input pipe")
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
                # The helper kills a scan at timeout_s; this backstop covers the helper.
                header, body = self._read_reply(proc, limits.timeout_s + 15)
            except (OSError, ScanError) as e:
                self._stop(kill=True)
                reason = e.message if isinstance(e, ScanError) else str(e)
                log.error("scan helper failed, restarting it on the next scan: %s", reason)
                raise ScanLimitExceeded(
                    f"the deploy scan did not complete: {reason}", hint=_HINT
                ) from e
        return self._report(header, body)

    def _report(self, header: dict[str, Any], body: bytes) -> ScanReport:
        outcome = str(header.get("outcome", ""))
        limits = self.limits
        if outcome == "done":
            problem = _json_object(body)
            error = problem.get("error")
            if isinstance(error, dict):
                raise ScanError(
                    str(error.get("message", "the scan failed")), hint=str(error.get("hint", ""))
                )
            return parse_json_report(body)
        reasons = {
            "timeout": f"did not finish within {limits.timeout_s:.0f}s",
            "cpu": f"used more than {limits.cpu_s}s of CPU time",
            "memory": f"needed more than {limits.memory_mb} MiB of memory",
            "too-large": "produced a report larger than the node accepts",
        }
        reason = reasons.get(outcome, f"stopped unexpectedly ({outcome or 'no answer'})")
        log.warning("deploy scan refused: it %s", reason)
        raise ScanLimitExceeded(f"the deploy scan of this bundle {reason}", hint=_HINT)

    @staticmethod
    def _read_reply(
        proc: subprocess.Popen[bytes], timeout_s: float
    ) -> tuple[dict[str, Any], bytes]:
        """One header line and its body from the helper, within `timeout_s`."""
        if proc.stdout is None:
            raise ScanError("the scan helper has no output pipe")
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        buffer = bytearray()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)

            def more() -> None:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise ScanError(f"the scan helper did not answer within {timeout_s:.0f}s")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise ScanError("the scan helper exited")
                buffer.extend(chunk)

            while b"\n" not in buffer:
                if len(buffer) > _MAX_HEADER:
                    raise ScanError("the scan helper answered out of protocol")
                more()
            line, _, rest = bytes(buffer).partition(b"\n")
            header = _json_object(line)
            size = int(header.get("bytes", 0))
            if not 0 <= size <= MAX_REPLY_BYTES:
                raise ScanError("the scan helper answered out of protocol")
            buffer[:] = rest
            while len(buffer) < size:
                more()
        if len(buffer) != size:
            raise ScanError("the scan helper answered out of protocol")
        return header, bytes(buffer)


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
