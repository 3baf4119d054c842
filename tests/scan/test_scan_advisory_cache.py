"""The parsed advisory database cached by the digest of its source (`cache_dir=`)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from packaging.version import Version

from donjon.scan import AdvisoryDB, IsolatedScanner, Severity
from donjon.scan.deps import advisories

_RECORD = """\
id: PYSEC-{n}
aliases: [CVE-2099-{n}]
summary: pkg{n} is broken
database_specific: {{severity: MODERATE}}
affected:
- package: {{ecosystem: PyPI, name: Pkg_{n}}}
  ranges:
  - type: ECOSYSTEM
    events:
    - introduced: '0'
    - fixed: '2.{n}'
  versions: ['1.{n}']
"""


def _source(root: Path, fixes: tuple[int, ...] = (1, 2, 3)) -> Path:
    for n in fixes:
        folder = root / "vulns" / f"pkg-{n}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"PYSEC-{n}.yaml").write_text(_RECORD.format(n=n))
    return root / "vulns"


def _facts(db: AdvisoryDB) -> list[tuple[str, str, Severity, str, bool, bool]]:
    return [
        (
            r.advisory.id,
            r.name,
            r.advisory.severity,
            r.advisory.rating,
            r.affects(Version("1.9")),
            r.affects(Version("9")),
        )
        for n in (1, 2, 3)
        for r in db.ranges_for(f"pkg-{n}")
    ]


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path) -> None:
        raise AssertionError("the source was parsed although the cache holds it")

    monkeypatch.setattr(advisories, "_records", refuse)


def test_a_second_load_comes_from_the_cache_with_the_same_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first load writes an owner-only cache file; the next reads it and parses nothing."""
    source, cache = _source(tmp_path / "db"), tmp_path / "cache"
    first = AdvisoryDB.load(source, cache_dir=cache)
    files = list(cache.glob("advisories-*.json"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    _no_parsing(monkeypatch)
    second = AdvisoryDB.load(source, cache_dir=cache)
    assert len(second) == len(first) == 3
    assert _facts(second) == _facts(first)
    assert ("PYSEC-2", "pkg-2", Severity.MEDIUM, "GHSA moderate", True, False) in _facts(first)


def test_a_changed_record_of_the_same_size_misses_the_cache(tmp_path: Path) -> None:
    """The key is the content's digest: an edit that keeps the size is still seen."""
    source, cache = _source(tmp_path / "db"), tmp_path / "cache"
    AdvisoryDB.load(source, cache_dir=cache)
    record = source / "pkg-1" / "PYSEC-1.yaml"
    before = record.stat()
    record.write_text(record.read_text().replace("fixed: '2.1'", "fixed: '2.0'"))
    assert record.stat().st_size == before.st_size
    db = AdvisoryDB.load(source, cache_dir=cache)
    [entry] = db.ranges_for("pkg-1")
    assert not entry.affects(Version("2.0.5"))
    assert len(list(cache.glob("advisories-*.json"))) == 2  # the current and the one before


def test_a_damaged_cache_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    """Garbage or a record of the wrong shape in the cache: the source is parsed again."""
    source, cache = _source(tmp_path / "db"), tmp_path / "cache"
    AdvisoryDB.load(source, cache_dir=cache)
    [file] = cache.glob("advisories-*.json")
    for damage in (b"{not json", json.dumps({"format": 1, "records": [1]}).encode()):
        file.write_bytes(damage)
        assert len(AdvisoryDB.load(source, cache_dir=cache)) == 3
    data = json.loads(file.read_bytes())
    data["records"][0]["severity"] = "not a grade"
    file.write_text(json.dumps(data))
    assert len(AdvisoryDB.load(source, cache_dir=cache)) == 3
    assert json.loads(file.read_bytes())["records"][0]["severity"] != "not a grade"


def test_a_cache_dir_that_cannot_be_written_only_costs_the_parsing(tmp_path: Path) -> None:
    """A cache path under a regular file cannot exist: the load works without a cache."""
    source = _source(tmp_path / "db")
    (tmp_path / "file").write_text("")
    assert len(AdvisoryDB.load(source, cache_dir=tmp_path / "file" / "cache")) == 3


@pytest.mark.slow  # starts two helper processes
def test_the_deploy_scan_helper_writes_and_reuses_the_cache(tmp_path: Path) -> None:
    """The helper the node starts (IsolatedScanner) keeps the parsed records in its cache dir."""
    source, cache = _source(tmp_path / "db"), tmp_path / "data" / "cache" / "advisories"
    for _ in range(2):  # the second start reads the cache the first one wrote
        scanner = IsolatedScanner(source, cache_dir=cache)
        try:
            scanner.start()
            assert scanner.advisories_loaded == 3
        finally:
            scanner.close()
        assert len(list(cache.glob("advisories-*.json"))) == 1
