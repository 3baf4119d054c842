"""The noisy-neighbour bench's flooder: wrk on keep-alive connections, its answers by status.

wrk is the cheap client (C, one thread, epoll): the flood must load the node, not the
client. It runs in the background (`flood` returns at once; `Flood.result()` waits),
bounded in time (`-d`) and in count (its script stops after `limit` answers), and
counts every answer's status in its script. `rate` > 0 spreads the flood: each
connection waits connections/rate seconds between its requests (wrk's `delay()`),
so the offered rate is at most `rate`; 0 floods as fast as the node answers.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["Flood", "flood", "machine_cpu"]

_SCRIPT = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  statuses = {}
  samples = {}
  answered = 0
  limit = tonumber(args[1])
  pause = tonumber(args[2])
end
function delay()
  return pause
end
function response(status, headers, body)
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
  if samples[k] == nil then
    samples[k] = string.sub(body, 1, 240)
  end
  answered = answered + 1
  if answered >= limit then
    wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do
      io.write(string.format("STATUS %s %d\n", k, v))
    end
    for k, v in pairs(t:get("samples")) do
      io.write(string.format("SAMPLE %s %s\n", k, string.gsub(v, "\n", " ")))
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout))
end
"""


class Flood:
    """A running wrk; `result()` waits for it and parses what it printed."""

    def __init__(self, proc: subprocess.Popen[str], script: Path, connections: int) -> None:
        self._proc, self._script, self._connections = proc, script, connections

    def result(self, timeout_s: float = 120.0) -> dict[str, Any]:
        try:
            out, err = self._proc.communicate(timeout=timeout_s)
        finally:
            self._script.unlink(missing_ok=True)
        statuses: dict[str, int] = {}
        samples: dict[str, str] = {}
        raw: dict[str, Any] | None = None
        for line in out.splitlines():
            if line.startswith("STATUS "):
                _, status, count = line.split()
                statuses[status] = statuses.get(status, 0) + int(count)
            elif line.startswith("SAMPLE "):
                _, status, body = line.split(" ", 2)
                samples.setdefault(status, body)
            elif line.startswith("BENCHJSON "):
                raw = json.loads(line.removeprefix("BENCHJSON "))
        if raw is None:
            raise RuntimeError(f"wrk gave no result: {out[-500:]} {err[-500:]}")
        return {
            "connections": self._connections,
            "requests": raw["requests"],
            "seconds": raw["duration_us"] / 1e6,
            "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "socket_errors": raw["socket_errors"],
            "statuses": dict(sorted(statuses.items())),
            "accepted": sum(n for s, n in statuses.items() if s.startswith("2")),
            "refused": sum(n for s, n in statuses.items() if not s.startswith("2")),
            "samples": samples,
        }


def _lua(value: str | bytes) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def flood(
    url: str, body: bytes, headers: dict[str, str], connections: int, rate: float, seconds: float
) -> Flood:
    """Start wrk against `url` for `seconds` (at most rate x seconds x 1.5 answers, or
    2,000 a second when `rate` is 0); returns at once."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua(body)}"]
    lines += [f"wrk.headers[{_lua(k)}] = {_lua(v)}" for k, v in headers.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lines) + "\n" + _SCRIPT)
        script = Path(f.name)
    pause_ms = round(connections * 1000 / rate) if rate > 0 else 0
    limit = int((rate if rate > 0 else 2000.0) * seconds * 1.5)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    argv += ["-s", str(script), url, "--", str(limit), str(pause_ms)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return Flood(proc, script, connections)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of every core since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total
