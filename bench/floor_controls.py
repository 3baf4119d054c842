"""Target 1's controls at their leanest, for the design floor (bench/floor_server.py --controls).

The floor (bench/warm_floor.py) is Donjon's warm path from bare parts with no
control. This module adds, in the fewest Python steps I could write, the controls
target 1 names (key check, policy, schema, rate limit, durable audit before the
response, metrics) and the per-call pieces of Donjon's other controls on that path
(the call's concurrency slots, its timeout, the monitor's per-call figures, the
invocation log's row, the hash chain and a signed head per commit, the worker's
resource reading). Each is the real operation, not a stand-in: an HMAC-SHA256 and a
constant-time compare for the key, token buckets, a JSON document checked against
the bench function's input schema, a SHA-256 chain, an Ed25519 signature.

What it leaves out, so that it prices those controls from below: quotas,
per-principal memory, the monitor's learned detectors beyond one running mean (unless
`--monitor`), log capture, checkpoints, the call's meta, CloudEvents, structured
logs, and the work of every refusal. The route is one function's, looked up from the
path as Donjon's registry would be. `floor_server.py serve --controls KEY` runs it;
`warm_floor.py` loads it as the `controls` and `controls8` variants with KEY as its
bearer token. With `--monitor` (`monitor8`) the gate also feeds each call to Donjon's
own runtime detectors (`Monitor`), the one piece taken whole from Donjon (a running
mean is not what the platform's anomaly alerts are), so with it this is no longer a
lower bound: those detectors are Donjon's as they are, not written leaner.
"""

from __future__ import annotations

import bisect
import hmac
import json
import re
from dataclasses import dataclass, field
from hashlib import sha256
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from donjon.audit.events import AuditEvent, CommittedRecord

# Donjon's modules and cryptography are imported where a control is built (`Monitor`,
# `Chain`), not here: floor_server.py imports this module in every variant, and the
# floor without controls (and its workers) must stay the bare parts it measures.

#: Donjon's key shape (identity/apikeys.py): an id and a 43-character secret.
KEY_RE = re.compile(r"^dj_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
#: The bench function's input schema (bench/handler's manifest): {"name": string <= 64}.
SCHEMA_PROPERTIES = frozenset({"name"})
BODY_LIMIT = 1 << 20
#: Histogram bounds of a call's duration, seconds (the metrics' default buckets).
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class Refused(Exception):
    """A control said no (the lean floor only measures the path that says yes)."""


@dataclass
class Bucket:
    """A token bucket: `rate` a second, up to `burst`."""

    rate: float
    burst: float
    tokens: float = 0.0
    stamp: float = 0.0

    def take(self, now: float) -> bool:
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BOUNDS, seconds)] += 1
        self.total += seconds


@dataclass
class Principal:
    id: str
    role: str
    functions: frozenset[str] | None
    expires_at: float | None = None


class Gate:
    """The gateway's side: everything a warm call passes before and after its worker."""

    def __init__(self, key: str, function: str = "bench") -> None:
        self._hash_key = b"\x5a" * 32
        m = KEY_RE.match(key)
        if m is None:
            raise ValueError("the key is not shaped dj_<16 hex>_<43 url-safe>")
        self._keys = {m.group(1): (hmac.digest(self._hash_key, key.encode(), sha256), key)}
        self._principals = {m.group(1): Principal("key:" + m.group(1), "invoker", None)}
        self._grants = frozenset({("invoker", "function.invoke")})
        self._used: dict[str, float] = {}
        self.function = function
        self._deployed = {function: 1}
        self._function_bucket = Bucket(1e9, 1e9, 1e9)
        self._caller_buckets: dict[str, Bucket] = {}
        self._function_slots, self._function_limit = 0, 64
        self._caller_slots: dict[str, int] = {}
        self._caller_limit = 64
        self.calls: dict[tuple[str, int], int] = {}
        self.durations: dict[str, Histogram] = {function: Histogram()}
        self._mean: dict[str, list[float]] = {function: [0.0, 0.0, 0.0]}  # n, mean, M2
        self.anomalies = 0
        self.monitor: Monitor | None = None

    def route(self, method: str, path: str) -> None:
        """The invoke route: POST /v1/functions/{name}/invoke, `name` deployed (404 else)."""
        if not (path.startswith("/v1/functions/") and path.endswith("/invoke")):
            raise Refused(404)
        if path[14:-7] not in self._deployed:
            raise Refused(404)
        if method != "POST":
            raise Refused(405)

    def authenticate(self, headers: list[tuple[bytes, bytes]], now: float) -> Principal:
        """The key check: the bearer token's id looked up, its HMAC compared in constant time."""
        presented = ""
        for name, value in headers:
            if name == b"authorization":
                presented = value.decode("latin-1").removeprefix("Bearer ")
                break
        m = KEY_RE.match(presented)
        if m is None:
            raise Refused(401)
        entry = self._keys.get(m.group(1))
        digest = hmac.digest(self._hash_key, presented.encode(), sha256)
        if entry is None or not hmac.compare_digest(digest, entry[0]):
            raise Refused(401)
        principal = self._principals[m.group(1)]
        if principal.expires_at is not None and now >= principal.expires_at:
            raise Refused(401)
        self._used[principal.id] = now
        return principal

    def allow(self, principal: Principal, now: float) -> None:
        """Policy, then the rate limits (the function's and the caller's), then the slots."""
        if (principal.role, "function.invoke") not in self._grants or (
            principal.functions is not None and self.function not in principal.functions
        ):
            raise Refused(403)
        bucket = self._caller_buckets.get(principal.id)
        if bucket is None:
            bucket = self._caller_buckets[principal.id] = Bucket(1e9, 1e9, 1e9, now)
        if not self._function_bucket.take(now) or not bucket.take(now):
            raise Refused(429)
        held = self._caller_slots.get(principal.id, 0)
        if self._function_slots >= self._function_limit or held >= self._caller_limit:
            raise Refused(503)
        self._function_slots += 1
        self._caller_slots[principal.id] = held + 1

    def release(self, principal: Principal) -> None:
        self._function_slots -= 1
        self._caller_slots[principal.id] -= 1

    @staticmethod
    def event(body: bytes) -> dict[str, Any]:
        """The body bounded, parsed, and checked against the function's input schema."""
        if len(body) > BODY_LIMIT:
            raise Refused(413)
        try:
            doc = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            raise Refused(400) from None
        if type(doc) is not dict or not SCHEMA_PROPERTIES.issuperset(doc):
            raise Refused(422)
        name = doc.get("name")
        if name is not None and (type(name) is not str or len(name) > 64):
            raise Refused(422)
        return doc

    def observe(self, principal: Principal, status: int, seconds: float) -> None:
        """The metrics (a counter, a histogram) and the monitor's running figures."""
        key = (self.function, status)
        self.calls[key] = self.calls.get(key, 0) + 1
        self.durations[self.function].observe(seconds)
        stats = self._mean[self.function]  # Welford: the mean and variance of the duration
        stats[0] += 1
        delta = seconds - stats[1]
        stats[1] += delta / stats[0]
        stats[2] += delta * (seconds - stats[1])
        if stats[0] > 30 and delta * delta > 16 * stats[2] / stats[0]:
            self.anomalies += 1

    def record(
        self, principal: Principal, rid: str, started: float, seconds: float, client: str
    ) -> bytes:
        """The audit record of the call, canonical JSON (sorted keys, no spaces: the bytes
        `json.dumps(..., sort_keys=True)` makes, written from a template; the principal's
        id, the request id and the function's name are of fixed safe alphabets), then its
        invocation row's fields, each after a unit separator (the writer splits them)."""
        client_json = encode_basestring_ascii(client)
        return (
            f'{{"action":"function.invoke","actor":"{principal.id}","detail":{{"client":'
            f'{client_json},"duration_ms":{round(seconds * 1000, 3)!r}}},"outcome":"ok",'
            f'"request_id":"{rid}","target":"{self.function}@1","ts":{started!r}}}'
            f"\x1f{self.function}\x1f{started!r}\x1fok\x1f{rid}"
        ).encode()


class Monitor:
    """Donjon's own runtime detectors (monitor/service.py's defaults), fed each call's record
    as the node's monitor is fed its committed records; `--monitor` adds it to the gate."""

    def __init__(self) -> None:
        from donjon.audit.events import AuditEvent, CommittedRecord
        from donjon.config import MonitorSettings
        from donjon.monitor.service import default_detectors

        action = "function.invoke"
        self._fed = [
            d
            for d in default_detectors(MonitorSettings())
            if action in getattr(d, "actions", (action,))
        ]
        self._event: type[AuditEvent] = AuditEvent
        self._record: type[CommittedRecord] = CommittedRecord
        self._seq = 0

    def see(self, principal: Principal, function: str, started: float, seconds: float) -> None:
        self._seq += 1
        detail = {"duration_ms": seconds * 1000, "trigger": "invoke", "memory_mb": 64}
        event = self._event(principal.id, "function.invoke", function + "@1", "ok", detail)
        record = self._record(self._seq, started, event)
        for detector in self._fed:
            detector.observe(record, started)


class Chain:
    """The writer's side: each record chained and in the Merkle tree (Donjon's Frontier),
    its invocation row, and a signed head (chain head and tree root) a commit."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS heads (seq INTEGER PRIMARY KEY, head BLOB, sig BLOB)",
        "CREATE TABLE IF NOT EXISTS calls (seq INTEGER PRIMARY KEY, function TEXT,"
        " ts REAL, outcome TEXT, request_id TEXT)",
        "CREATE INDEX IF NOT EXISTS calls_by_function ON calls (function, ts)",
    )

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from donjon.audit.frontier import Frontier

        self.head = bytes(32)
        self.tree = Frontier()
        self._key = Ed25519PrivateKey.generate()

    def link(self, framed: bytes) -> tuple[bytes, bytes, tuple[bytes, ...]]:
        """The record (`Gate.record`'s frame without its row), its chain hash, its row."""
        record, *row = framed.split(b"\x1f")
        leaf = sha256(b"\x00" + record).digest()
        self.head = sha256(b"\x01" + self.head + leaf).digest()
        self.tree.append(leaf)
        return record, self.head, tuple(row)

    def sign(self, seq: int) -> bytes:
        return self._key.sign(seq.to_bytes(8, "big") + self.head + self.tree.root())
