"""The learned detectors on a synthetic trace with injected anomalies, on a fake clock.

24 simulated hours of eight API keys and public callers calling six functions
(Poisson arrivals with a daily swing, log-normal durations, a little failure
and the odd slow cold start), two deploys that change nothing and one that
breaks a function, a new key, a key moving within its network; and injected:
two call bursts, an error-rate jump, the broken deploy, two slowdowns, a cost
surge, three keys calling functions they never called and two calling from
networks they never used. Findings are deduplicated as the monitor does (one
per kind and subject per 300 s); a finding is true if it names a subject of
an injected anomaly, from a detector that anomaly moves, during it (or up to
10 minutes after: a window or a block has to close). Precision and recall per
detector are stored for the session summary (tests/conftest.py prints them).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest

from donjon.audit.log import AuditEvent, CommittedRecord
from donjon.monitor.detector import Detector
from donjon.monitor.findings import Finding, Subject
from donjon.monitor.learned import LEARNED, learned_detectors
from trace_scores import SCORES, Score, Trace

HOUR = 3600.0
T0 = 1_799_971_200.0  # a midnight, UTC
HOURS = 24.0
LEARNING_S = 6 * HOUR
DEDUP_S = 300.0
SLACK_S = 600.0


@dataclass(frozen=True)
class Fn:
    median_ms: float
    memory_mb: int
    error_p: float


FUNCTIONS = {
    "api": Fn(40, 128, 0.01),
    "thumb": Fn(250, 512, 0.02),
    "report": Fn(900, 1024, 0.0),
    "auth": Fn(15, 128, 0.03),
    "billing": Fn(120, 256, 0.01),
    "search": Fn(80, 256, 0.02),
}


@dataclass(frozen=True)
class Caller:
    label: str
    per_minute: float
    functions: tuple[str, ...]
    network: str
    since_h: float = 0.0


CALLERS = (
    Caller("key:k0", 6.0, ("api", "auth"), "10.0.0"),
    Caller("key:k1", 3.0, ("api", "search"), "10.0.1"),
    Caller("key:k2", 2.0, ("thumb",), "10.0.2"),
    Caller("key:k3", 1.0, ("report",), "10.0.3"),
    Caller("key:k4", 4.0, ("api", "billing", "search"), "10.0.4"),
    Caller("key:k5", 0.5, ("billing",), "10.0.5"),
    Caller("key:k6", 2.0, ("thumb", "report"), "10.0.6"),
    Caller("key:k7", 8.0, ("search", "auth"), "10.0.7"),
    Caller("key:k8", 2.0, ("api", "search"), "10.0.8", since_h=12.0),  # created at 12:00
    Caller("public", 2.0, ("api",), "172.16.9"),
)


@dataclass(frozen=True)
class Injection:
    """One anomaly: what it does, when, and the detectors whose recall it counts in."""

    name: str
    start_h: float
    end_h: float
    detectors: frozenset[str]
    also: frozenset[str] = frozenset()
    key: str | None = None
    function: str | None = None
    rate: float | None = None  # calls a minute of `key` (to its functions)
    error_p: float | None = None
    slow: float = 1.0
    target: str | None = None  # a function `key` never called
    source: str | None = None  # an address outside `key`'s network

    def active(self, hour: float) -> bool:
        return self.start_h <= hour < self.end_h


INJECTIONS = (
    Injection("burst k2", 11.0, 11.2, frozenset({"call_rate", "cost"}), key="key:k2", rate=40),
    Injection("burst k5", 22.0, 22.15, frozenset({"call_rate", "cost"}), key="key:k5", rate=25),
    Injection(
        "errors search", 14.0, 14.5, frozenset({"error_rate"}), function="search", error_p=0.5
    ),
    Injection(
        "broken billing@2", 17.0, 18.0, frozenset({"error_rate"}), function="billing", error_p=0.4
    ),
    Injection(
        "slow thumb",
        13.0,
        13.5,
        frozenset({"duration"}),
        frozenset({"cost"}),
        function="thumb",
        slow=5.0,
    ),
    Injection(
        "slow report",
        21.0,
        21.33,
        frozenset({"duration"}),
        frozenset({"cost"}),
        function="report",
        slow=4.0,
    ),
    Injection(
        "cost k6",
        20.0,
        20.5,
        frozenset({"cost"}),
        frozenset({"duration", "call_rate"}),
        key="key:k6",
        rate=6,
        slow=3.0,
    ),
    Injection(
        "k1 calls billing",
        8.0,
        8.1,
        frozenset({"first_seen"}),
        frozenset({"cost"}),
        key="key:k1",
        target="billing",
    ),
    Injection(
        "k4 calls report",
        15.5,
        15.6,
        frozenset({"first_seen"}),
        frozenset({"cost"}),
        key="key:k4",
        target="report",
    ),
    Injection(
        "k6 calls auth",
        22.5,
        22.6,
        frozenset({"first_seen"}),
        frozenset({"cost"}),
        key="key:k6",
        target="auth",
    ),
    Injection(
        "k0 from elsewhere", 9.5, 9.6, frozenset({"first_seen"}), key="key:k0", source="203.0.113.5"
    ),
    Injection(
        "k7 from elsewhere",
        19.0,
        19.1,
        frozenset({"first_seen"}),
        key="key:k7",
        source="198.51.100.23",
    ),
)

#: Deploys: (hour, function, version). billing@2 is the broken one (see INJECTIONS).
DEPLOYS = ((10.0, "api", 2), (17.0, "billing", 2), (18.0, "billing", 3))


@dataclass
class World:
    """The trace as it is generated: its records, and who each anomaly touched."""

    rng: random.Random
    events: list[tuple[float, AuditEvent]] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FUNCTIONS, 1))
    touched: dict[str, set[Subject]] = field(default_factory=dict)

    def call(self, ts: float, caller: str, function: str, client: str, hour: float) -> None:
        fn = FUNCTIONS[function]
        error_p, slow = fn.error_p, 1.0
        hits = [i for i in INJECTIONS if i.active(hour) and _touches(i, caller, function)]
        for inj in hits:
            error_p = inj.error_p if inj.error_p is not None else error_p
            slow *= inj.slow
        if self.rng.random() < 0.005:  # a cold start
            slow *= 4.0
        duration = fn.median_ms * slow * math.exp(self.rng.gauss(0.0, 0.25))
        version = f"{function}@{self.versions[function]}"
        outcome = "FunctionFailed" if self.rng.random() < error_p else "ok"
        detail = {"duration_ms": round(duration, 3), "memory_mb": fn.memory_mb, "client": client}
        self.events.append((ts, AuditEvent(caller, "function.invoke", version, outcome, detail)))
        for inj in hits:
            subjects = self.touched.setdefault(inj.name, set())
            subjects.add(Subject("function", version))
            if caller != "public":
                subjects.add(Subject("principal", caller))


def _touches(inj: Injection, caller: str, function: str) -> bool:
    if inj.function is not None:
        return inj.function == function
    return inj.key == caller and inj.target is None and inj.source is None


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means of one minute."""
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def generate(seed: int = 13) -> tuple[list[CommittedRecord], World]:
    world = World(random.Random(seed))  # noqa: S311 - a seeded simulation, not a secret
    rng = world.rng
    deploys = list(DEPLOYS)
    for minute in range(int(HOURS * 60)):
        hour = minute / 60.0
        start = T0 + minute * 60.0
        while deploys and deploys[0][0] <= hour:
            _, name, version = deploys.pop(0)
            world.versions[name] = version
            world.events.append(
                (start, AuditEvent("key:admin", "function.deploy", f"{name}@{version}", "ok"))
            )
        swing = 1.0 + 0.3 * math.sin(2 * math.pi * hour / 24.0)
        for caller in CALLERS:
            if hour < caller.since_h:
                continue
            if hour == caller.since_h:
                world.events.append(
                    (start, AuditEvent("key:admin", "key.create", caller.label, "ok"))
                )
            rate = caller.per_minute * swing
            for inj in INJECTIONS:
                if inj.active(hour) and inj.key == caller.label and inj.rate is not None:
                    rate = inj.rate
            for _ in range(_poisson(rng, rate)):
                ts = start + rng.random() * 60.0
                client = f"{caller.network}.{rng.randint(1, 3)}"
                world.call(ts, caller.label, rng.choice(caller.functions), client, hour)
        for inj in INJECTIONS:  # first-seen pairs: a few calls each
            if inj.active(hour) and inj.key is not None and (inj.target or inj.source):
                own = next(c for c in CALLERS if c.label == inj.key)
                function = inj.target or own.functions[0]
                client = inj.source or f"{own.network}.1"
                world.call(start + rng.random() * 60.0, inj.key, function, client, hour)
                world.touched.setdefault(inj.name, set()).add(Subject("principal", inj.key))
    world.events.sort(key=lambda e: e[0])
    records = [CommittedRecord(i + 1, ts, ev) for i, (ts, ev) in enumerate(world.events)]
    return records, world


def run(detectors: list[Detector], records: list[CommittedRecord]) -> list[Finding]:
    """Feed the trace in order, ticking every 5 simulated seconds, and deduplicate as the
    monitor does (one finding per kind and subject per DEDUP_S)."""
    raised: dict[tuple[str, Subject], float] = {}
    kept: list[Finding] = []
    next_tick = records[0].ts
    for record in records:
        found: list[Finding] = []
        while next_tick <= record.ts:
            found += [f for d in detectors for f in d.tick(next_tick)]
            next_tick += 5.0
        found += [f for d in detectors for f in d.observe(record, record.ts)]
        for finding in found:
            key = (finding.kind, finding.subject)
            if key in raised and finding.ts - raised[key] < DEDUP_S:
                continue
            raised[key] = finding.ts
            kept.append(finding)
    return kept


def score(findings: list[Finding], world: World) -> tuple[Score, ...]:
    def matches(finding: Finding, inj: Injection) -> bool:
        return (
            finding.detector in inj.detectors | inj.also
            and finding.subject in world.touched.get(inj.name, set())
            and T0 + inj.start_h * HOUR <= finding.ts <= T0 + inj.end_h * HOUR + SLACK_S
        )

    scores = []
    for name in LEARNED:
        mine = [f for f in findings if f.detector == name]
        expected = [i for i in INJECTIONS if name in i.detectors]
        scores.append(
            Score(
                detector=name,
                findings=len(mine),
                true=sum(any(matches(f, i) for i in INJECTIONS) for f in mine),
                anomalies=len(expected),
                found=sum(any(matches(f, i) for f in mine) for i in expected),
            )
        )
    return tuple(scores)


@pytest.fixture(scope="module")
def generated() -> tuple[list[CommittedRecord], World]:
    return generate()


@pytest.fixture(scope="module")
def trace(generated: tuple[list[CommittedRecord], World]) -> Trace:
    records, world = generated
    findings = run(learned_detectors(LEARNING_S), records)
    calls = sum(r.event.action == "function.invoke" for r in records)
    return Trace(HOURS, calls, len(INJECTIONS), score(findings, world))


def test_every_injected_anomaly_touched_someone(
    generated: tuple[list[CommittedRecord], World],
) -> None:
    """The trace is what it claims: each injection changed some calls."""
    _, world = generated
    assert sorted(world.touched) == sorted(i.name for i in INJECTIONS)


def test_detectors_find_the_injected_anomalies(
    trace: Trace, request: pytest.FixtureRequest
) -> None:
    """Each learned detector finds most of its anomalies, and most of what it finds is one."""
    request.config.stash[SCORES] = trace
    for s in trace.scores:
        assert s.anomalies > 0, s
        assert s.recall is not None and s.recall >= 0.75, s
        assert s.precision is not None and s.precision >= 0.75, s


def test_the_scoring_counts_misses_and_false_findings(
    generated: tuple[list[CommittedRecord], World],
) -> None:
    """The score can fail: no findings find nothing; a finding out of any anomaly is false."""
    _, world = generated
    assert all(s.found == 0 and s.precision is None for s in score([], world))
    stray = Finding(
        "baseline.call_rate", "call_rate", "medium", Subject("principal", "key:k0"), "x", (1,), T0
    )
    (call_rate, *_) = score([stray], world)
    assert (call_rate.findings, call_rate.true, call_rate.found) == (1, 0, 0)
