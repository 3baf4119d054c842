"""DJ-IAC-020 and its dated table: a runtime's stage depends on the day checked, each
cloud spells runtimes its own way, unknown names give nothing."""

from __future__ import annotations

from datetime import date

from donjon.scan.iac.config_rules import STALE_DAYS, WARN_DAYS, runtime_check
from donjon.scan.iac.model import Cloud, Val
from donjon.scan.iac.runtimes import Stage, runtime_key, runtime_table
from donjon.scan.model import Confidence, Severity
from iac_support import app, function, graded, run


def _check(runtime: Val[str], today: date, cloud: Cloud = Cloud.AWS) -> list[tuple[Severity, str]]:
    built = app(functions=(function(runtime=runtime, cloud=cloud),))
    return [(f.severity, f.message) for f in run(runtime_check(today), built)]


def test_python38_on_lambda_moves_through_its_stages() -> None:
    """python3.8 on Lambda: fine before 2024-10-14, low in the 90 days before, medium once
    deprecated, high once updates are blocked (2027-03-03)."""
    py38 = Val.of("python3.8", 11)
    assert _check(py38, date(2024, 6, 1)) == []
    assert [s for s, _ in _check(py38, date(2024, 9, 1))] == [Severity.LOW]
    deprecated = _check(py38, date(2024, 10, 14))
    assert [s for s, _ in deprecated] == [Severity.MEDIUM]
    assert "deprecated since 2024-10-14" in deprecated[0][1]
    assert "updates refused from 2027-03-03" in deprecated[0][1]
    blocked = _check(py38, date(2027, 3, 3))
    assert [s for s, _ in blocked] == [Severity.HIGH]
    assert "updates refused since 2027-03-03" in blocked[0][1]


def test_supported_runtime_is_not_reported() -> None:
    """python3.13 is years from its deprecation."""
    assert _check(Val.of("python3.13", 11), date(2026, 12, 2)) == []


def test_unknown_runtime_names_give_nothing() -> None:
    """A name the table does not hold (a new runtime, a typo) is not guessed at."""
    assert _check(Val.of("python9.9", 11), date(2026, 12, 2)) == []
    assert _check(Val.of("cobol85", 11), date(2026, 12, 2)) == []


def test_each_cloud_is_read_in_its_own_spelling() -> None:
    """Google's python38, Azure's node16 and Lambda's nodejs12.x are each found."""
    today = date(2026, 12, 2)
    assert [s for s, _ in _check(Val.of("python38", 11), today, Cloud.GCP)] == [Severity.HIGH]
    assert [s for s, _ in _check(Val.of("node16", 11), today, Cloud.AZURE)] == [Severity.MEDIUM]
    assert [s for s, _ in _check(Val.of("nodejs12.x", 11), today)] == [Severity.HIGH]


def test_runtime_keys_join_spellings() -> None:
    """nodejs18.x, node18 and nodejs18 are one key; python3.10 is not python3.1."""
    assert runtime_key("nodejs18.x") == runtime_key("node18") == runtime_key("NodeJS18")
    assert runtime_key("python3.10") != runtime_key("python3.1")
    assert runtime_key("dotnet8.0") == runtime_key("dotnet8") == runtime_key("dotnetv8.0")
    assert runtime_key("dotnet-isolated8.0") == runtime_key("dotnet8")
    assert runtime_key("provided.al2") == "provided.al2"


def test_conditional_runtime_is_may_and_medium() -> None:
    """A runtime chosen by Fn::If: the old branch is reported as "may run on"."""
    found = run(
        runtime_check(date(2026, 12, 2)),
        app(functions=(function(runtime=Val(("python3.13", "python3.8"), (), 11, True)),)),
    )
    assert graded(found) == [(11, Confidence.MEDIUM)]
    assert "may run on" in found[0].message


def test_unresolved_runtime_is_low_and_named() -> None:
    """A runtime from a parameter without default is reported low, naming it."""
    runtime = Val[str].unknown("!Ref Runtime", "parameter without default", 11)
    found = run(runtime_check(date(2026, 12, 2)), app(functions=(function(runtime=runtime),)))
    assert graded(found) == [(11, Confidence.LOW)]
    assert "!Ref Runtime" in found[0].message


def test_old_data_is_said_in_the_message() -> None:
    """Past STALE_DAYS after the table's as-of date, each finding says how old it is."""
    table = runtime_table()
    later = date.fromordinal(table.as_of.toordinal() + STALE_DAYS + 1)
    message = _check(Val.of("python2.7", 11), later)[0][1]
    assert f"runtime dates as of {table.as_of}" in message
    fresh = _check(Val.of("python2.7", 11), table.as_of)[0][1]
    assert "runtime dates as of" not in fresh


def test_table_is_consistent() -> None:
    """Every cloud has entries, each deprecated on some date, none with updates blocked
    before creates (a transcription slip), and the stage on a deprecation day is at
    least deprecated."""
    table = runtime_table()
    for cloud in Cloud:
        assert table.by_cloud[cloud], cloud
        for life in table.by_cloud[cloud].values():
            assert life.deprecated is not None, life.runtime
            if life.create_blocked and life.update_blocked:
                assert life.create_blocked <= life.update_blocked, life.runtime
            assert life.stage(life.deprecated, WARN_DAYS) >= Stage.DEPRECATED
