"""Learned baselines per function version and per principal: call rate, error rate,
duration and cost (robust.py holds the statistics).

Each detector keeps one series per subject: `function:name@version` and
`principal:<label>` (public and scheduled calls have no principal). A series
learns until it has `band.min_history` values, then judges every new one
against its band; a value it finds anomalous raises a finding and is never
learned, so an attack cannot teach the baseline that it is normal.

- `call_rate`: calls per `bucket_s` window; `cost`: GB-seconds (wall time x
  memory limit) per window (rates.py). A window is judged while it fills, so a
  burst is found at the call that crosses the band, not a minute later.
- `error_rate`: the share of failed calls in blocks of `block` calls.
- `duration`: each call's wall time; `streak` outliers among the last `recent`
  calls make a finding (one slow cold start does not).

A deploy resets the function's series: the new version learns from scratch
and the old versions' series are dropped. Until the new version has learned
its own error rate, it is judged against its predecessor's (a deploy that
breaks a function is found at once, as canary analysis would); its duration
and rates are not, since a new version may legitimately do more.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from donjon.audit.log import CommittedRecord
from donjon.monitor.calls import Call, Change, read_call, read_change
from donjon.monitor.findings import Finding, Severity, Subject, SubjectKind
from donjon.monitor.robust import Band, BaselineError, RobustWindow
from donjon.monitor.series import SubjectTable

__all__ = [
    "MAX_EVIDENCE",
    "DurationDetector",
    "ErrorRateDetector",
    "SeriesDetector",
    "function_subject",
    "read_view",
    "subjects_of",
]

S = TypeVar("S")

#: Evidence seqs a series keeps for one finding (the alert record keeps as many).
MAX_EVIDENCE = 64


#: Subjects made once per function version and per principal, so that every call's lookups
#: in the series tables match by identity (a `Subject`'s generated `__eq__` and `__hash__`
#: run in Python: comparing a fresh one per call was a third of a baseline's cost). Only a
#: cache: when full it starts again, and a fresh `Subject` still finds its series by value.
_FUNCTIONS: dict[str, Subject] = {}
_PRINCIPALS: dict[str, Subject] = {}
_MAX_INTERNED = 20_000


def _interned(table: dict[str, Subject], kind: SubjectKind, ident: str) -> Subject:
    subject = table.get(ident)
    if subject is None:
        if len(table) >= _MAX_INTERNED:
            table.clear()
        subject = table[ident] = Subject(kind, ident)
    return subject


def function_subject(version: str) -> Subject:
    """The subject of a function version's series (`function:name@version`)."""
    return _interned(_FUNCTIONS, "function", version)


#: (version, principal) -> the subjects of its calls, made of the interned ones above: one
#: lookup a call instead of one (and a Python call) per subject. Only a cache, like them.
_PAIRS: dict[tuple[str, str | None], tuple[Subject, ...]] = {}


def subjects_of(call: Call) -> tuple[Subject, ...]:
    """The series one call feeds: its function version's, and its principal's if it has one."""
    pair = (call.version, call.principal)
    subjects = _PAIRS.get(pair)
    if subjects is None:
        if len(_PAIRS) >= _MAX_INTERNED:
            _PAIRS.clear()
        subjects = _PAIRS[pair] = (
            (function_subject(call.version),)
            if call.principal is None
            else (
                function_subject(call.version),
                _interned(_PRINCIPALS, "principal", call.principal),
            )
        )
    return subjects


#: What a baseline reads of a record: the deploy or removal it is, else the call it is,
#: its time, and the subjects the call feeds.
_View = tuple[Change | None, Call | None, float, tuple[Subject, ...]]
#: The last record read, the clock it was read at, and its view: the four baselines read
#: every record in turn, with the same clock, and need the same view of it.
_last_view: tuple[CommittedRecord | None, float, _View] = (None, 0.0, (None, None, 0.0, ()))


def read_view(record: CommittedRecord, now: float) -> _View:
    """The view of `record` every baseline reads (made once per record and clock)."""
    global _last_view  # noqa: PLW0603 - a one-entry memo of the record in hand
    last = _last_view  # read once: another node's loop in another thread may replace it
    if last[0] is record and last[1] == now:
        return last[2]
    # A call is read as a call (no `read_change`: most records are calls). Its time is
    # its commit time, or the monitor's clock if that is behind it (a test's fake clock):
    # records replayed at a node's start so fall in their own minutes, not in now's.
    change = None if record.event.action == "function.invoke" else read_change(record)
    call = read_call(record) if change is None else None
    if call is None:
        subjects: tuple[Subject, ...] = ()
    else:  # (`subjects_of`'s lookup, inline)
        subjects = _PAIRS.get((call.version, call.principal)) or subjects_of(call)
    ts = record.ts
    view: _View = (change, call, ts if ts < now else now, subjects)
    _last_view = (record, now, view)
    return view


def _round(value: float) -> float:
    return round(value, 6)


class SeriesDetector(Generic[S]):
    """What every baseline detector shares: the subjects, their cap, and deploy resets."""

    name: str
    kind: str
    severity: Severity = "medium"
    #: The only records a baseline reads (calls, deploys, removals: `read_view`); the
    #: monitor spares it the others (engine.py).
    actions = frozenset({"function.invoke", "function.deploy", "function.delete"})

    def __init__(self, band: Band, max_subjects: int) -> None:
        self.band = band
        self.series: SubjectTable[S] = SubjectTable(max_subjects)

    def new_state(self) -> S:
        """The state of a subject seen for the first time (learning)."""
        raise NotImplementedError

    def observe(self, record: CommittedRecord, now: float) -> list[Finding]:
        change, call, at, subjects = read_view(record, now)
        if call is None:
            if change is not None:
                self._reset(change)
            return []
        findings: list[Finding] = []
        self.see_all(subjects, call, at, findings)
        return findings

    def tick(self, now: float) -> list[Finding]:
        return []

    def see(self, subject: Subject, call: Call, now: float) -> Finding | None:
        raise NotImplementedError

    def see_all(
        self, subjects: tuple[Subject, ...], call: Call, now: float, found: list[Finding]
    ) -> None:
        """`see` the call for each of its subjects in turn, adding the findings to `found`
        (a baseline may do once what is the same for every subject of the call)."""
        for subject in subjects:
            finding = self.see(subject, call, now)
            if finding is not None:
                found.append(finding)

    def _reset(self, change: Change) -> None:
        """Drop the function's old versions (and on a removal, every version)."""
        prefix = f"{change.function}@"
        old = [
            s
            for s in self.series
            if s.kind == "function" and s.id.startswith(prefix) and s.id != change.version
        ]
        dropped = [state for s in old if (state := self.series.pop(s)) is not None]
        if change.version is not None:  # (calls of it recorded before its deploy are kept)
            self.inherit(Subject("function", change.version), dropped)

    def inherit(self, subject: Subject, predecessors: list[S]) -> None:
        """What a new version keeps of the versions it replaces (nothing by default)."""

    def finding(
        self, subject: Subject, summary: str, evidence: list[int], now: float, **detail: object
    ) -> Finding:
        return Finding(
            kind=self.kind,
            detector=self.name,
            severity=self.severity,
            subject=subject,
            summary=summary,
            evidence=tuple(evidence[:MAX_EVIDENCE]),
            ts=now,
            detail={"baseline": self.name, **detail},
        )


# -- error rate -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Errors:
    window: RobustWindow
    #: The predecessor's learned window, judging until this series has learned its own.
    reference: RobustWindow | None = None
    calls: int = 0
    errors: int = 0
    flagged: bool = False
    evidence: list[int] = field(default_factory=list)


class ErrorRateDetector(SeriesDetector[_Errors]):
    """The share of failed calls per block of `block` calls, against its median and MAD."""

    name = "error_rate"
    kind = "baseline.error_rate"

    def __init__(
        self, band: Band | None = None, *, block: int = 20, max_subjects: int = 5000
    ) -> None:
        super().__init__(band or Band(k=4.0, abs_min=0.2, size=50, min_history=5), max_subjects)
        if block < 2:
            raise BaselineError(f"an error-rate block of {block} call(s) is no rate", hint="use 2+")
        self.block = block

    def new_state(self) -> _Errors:
        return _Errors(RobustWindow(self.band))

    def inherit(self, subject: Subject, predecessors: list[_Errors]) -> None:
        learned = [p.window for p in predecessors if p.window.learned]
        if learned:
            self.series.setdefault(subject, self.new_state).reference = learned[-1]

    def see(self, subject: Subject, call: Call, now: float) -> Finding | None:
        found: list[Finding] = []
        self.see_all((subject,), call, now, found)
        return found[0] if found else None

    def see_all(
        self, subjects: tuple[Subject, ...], call: Call, now: float, found: list[Finding]
    ) -> None:
        """Each subject's block in turn (one call for all of them: this runs for every call)."""
        table, block = self.series.table, self.block
        for subject in subjects:
            state = table.get(subject.text)  # (`series.setdefault`, inline)
            if state is None:
                state = self.series.setdefault(subject, self.new_state)
            else:
                table.move_to_end(subject.text)
            state.calls += 1
            if not call.ok:
                state.errors += 1
                if len(state.evidence) < MAX_EVIDENCE:
                    state.evidence.append(call.seq)
            judge = state.window if state.window.learned else state.reference
            if not state.flagged and judge is not None and judge.learned:
                stats = judge.current  # (`judge.upper()`, inline)
                upper = (stats if stats is not None else judge.fresh())[2]
                if state.errors > upper * block:
                    state.flagged = True
                    found.append(self._finding(subject, state, judge, upper, now))
            if state.calls >= block:
                if not state.flagged:
                    state.window.push(state.errors / state.calls)
                state.calls = state.errors = 0
                state.flagged = False
                state.evidence = []

    def _finding(
        self, subject: Subject, state: _Errors, judge: RobustWindow, upper: float, now: float
    ) -> Finding:
        median, _ = judge.stats()
        return self.finding(
            subject,
            f"{subject}: {state.errors} of {state.calls} calls failed"
            f" (usual share {median:.0%}, band {upper:.0%} of {self.block})",
            state.evidence,
            now,
            errors=state.errors,
            calls=state.calls,
            block=self.block,
            median=_round(median),
            upper=_round(upper),
            reference=judge is state.reference,
        )


# -- duration -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Durations:
    window: RobustWindow
    #: The last calls: (seq, whether it was an outlier).
    recent: deque[tuple[int, bool]]


class DurationDetector(SeriesDetector[_Durations]):
    """Each call's wall time against the median and MAD of the last ones found normal.

    A function version's series is in milliseconds. A principal's is each call's
    time relative to its function version's median (2.0: twice as slow as that
    function usually is), since a key calling a fast and a slow function has no
    single usual duration; its calls are judged once their version has learned.
    """

    name = "duration"
    kind = "baseline.duration"
    severity: Severity = "low"

    def __init__(
        self,
        band: Band | None = None,
        ratio_band: Band | None = None,
        *,
        streak: int = 3,
        recent: int = 10,
        max_subjects: int = 5000,
    ) -> None:
        super().__init__(
            band or Band(k=6.0, rel=0.5, abs_min=25.0, size=200, min_history=30), max_subjects
        )
        self.ratio_band = ratio_band or Band(k=6.0, rel=0.5, abs_min=0.5, size=200, min_history=30)
        if not 1 <= streak <= recent:
            raise BaselineError(
                f"a duration streak of {streak} in {recent} calls cannot happen",
                hint="streak must be 1..recent",
            )
        self.streak, self.recent = streak, recent
        #: The last call seen for its function version, and that version's series: the
        #: call's principal, seen next, is judged against it (found without a lookup).
        self._version: tuple[Call | None, _Durations | None] = (None, None)

    def new_state(self) -> _Durations:
        return _Durations(RobustWindow(self.band), deque(maxlen=self.recent))

    def _new_ratio(self) -> _Durations:
        return _Durations(RobustWindow(self.ratio_band), deque(maxlen=self.recent))

    def see(self, subject: Subject, call: Call, now: float) -> Finding | None:
        found: list[Finding] = []
        self.see_all((subject,), call, now, found)
        return found[0] if found else None

    def see_all(  # noqa: PLR0912 - `see` for every subject, inline: this runs for every call
        self, subjects: tuple[Subject, ...], call: Call, now: float, found: list[Finding]
    ) -> None:
        """Each subject's series in turn (one call for all of them: this runs for every call)."""
        duration = call.duration_ms
        if duration is None:
            return
        table = self.series.table
        for subject in subjects:
            if subject.kind == "function":
                value = duration
                state = table.get(subject.text)  # (`series.setdefault`, inline)
                if state is None:
                    state = self.series.setdefault(subject, self.new_state)
                else:
                    table.move_to_end(subject.text)
                if subject.id == call.version:
                    self._version = (call, state)
            else:
                seen, version = self._version
                if seen is not call:  # (else its version's series was just looked up, and used)
                    version = self.series.get(function_subject(call.version))
                if version is None or not version.window.learned:
                    continue
                stats = version.window.current  # (`stats()`, inline)
                usual = (stats if stats is not None else version.window.fresh())[0]
                if usual <= 0:
                    continue
                value = duration / usual
                state = table.get(subject.text)
                if state is None:
                    state = self.series.setdefault(subject, self._new_ratio)
                else:
                    table.move_to_end(subject.text)
            outlier = state.window.judge(value)  # (pushed if it is not)
            state.recent.append((call.seq, outlier))
            if not outlier:
                continue
            slow = [seq for seq, out in state.recent if out]
            if len(slow) < self.streak:
                continue
            state.recent.clear()
            unit = "ms" if subject.kind == "function" else "x its function's median"
            found.append(self._finding(subject, state, value, unit, slow, now))

    def _finding(
        self,
        subject: Subject,
        state: _Durations,
        value: float,
        unit: str,
        slow: list[int],
        now: float,
    ) -> Finding:
        median, _ = state.window.stats()
        upper = state.window.upper()
        return self.finding(
            subject,
            f"{subject}: {len(slow)} of its last {self.recent} calls took longer than"
            f" {upper:.3g} {unit} (usual {median:.3g}; the last {value:.3g})",
            slow,
            now,
            value=_round(value),
            unit=unit,
            median=_round(median),
            upper=_round(upper),
        )
