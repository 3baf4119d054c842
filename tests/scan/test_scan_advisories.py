"""The OSV database: directory and zip sources, PEP 440 matching, severity, --update-db."""

from __future__ import annotations

import http.server
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from donjon.scan import AdvisoryDB, ScanError, Severity, scan_path, update_advisory_db
from donjon.scan.deps import osv_update
from donjon.scan.deps.cvss import cvss3_base_score


def _record(vid: str, name: str, events: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "id": vid,
        "aliases": [f"CVE-2099-{vid[-4:]}"],
        "summary": f"{name} is broken",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
        **extra,
    }


RECORDS = [
    _record("OSV-0001", "Demo_Pkg", [{"introduced": "0"}, {"fixed": "2.0.0"}]),
    _record(
        "OSV-0002",
        "other",
        [{"introduced": "1.5"}, {"last_affected": "1.7"}],
        severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    ),
    _record(
        "OSV-0003",
        "other",
        [{"introduced": "3.0rc1"}, {"fixed": "3.0.2"}],
        database_specific={"severity": "MODERATE"},
    ),
    _record("OSV-0004", "gone", [{"introduced": "0"}], withdrawn="2024-01-01T00:00:00Z"),
    {"id": "NPM-1", "affected": [{"package": {"ecosystem": "npm", "name": "demo-pkg"}}]},
]


def _zip(path: Path, records: list[dict[str, Any]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for record in records:
            archive.writestr(f"{record['id']}.json", json.dumps(record))
    return path


def test_export_zip_is_loaded_and_matched_with_pep440(tmp_path: Path) -> None:
    """Names are canonicalised, 1.0 == 1.0.0, ranges honour introduced/fixed/last_affected."""
    db = AdvisoryDB.load(_zip(tmp_path / "all.zip", RECORDS))
    assert len(db) == 3  # withdrawn and npm records skipped
    assert [r.advisory.id for r in db.affecting("demo-pkg", Version("1.0"))] == ["OSV-0001"]
    assert db.affecting("DEMO.PKG", Version("1.9.9.post1"))
    assert db.affecting("demo_pkg", Version("2.0.0")) == []
    assert db.affecting("demo-pkg", Version("2.0.0rc1"))  # a pre-release of the fix
    assert [r.advisory.id for r in db.affecting("other", Version("1.7.0"))] == ["OSV-0002"]
    assert db.affecting("other", Version("1.7.1")) == []
    assert db.affecting("other", Version("1.4")) == []
    assert [r.advisory.id for r in db.affecting("other", Version("3.0.1"))] == ["OSV-0003"]
    assert db.affecting("gone", Version("1.0")) == []


def test_severity_comes_from_cvss_then_ghsa_then_defaults_high(tmp_path: Path) -> None:
    """CVSS 3.1 vectors are scored; GHSA labels map; unrated counts as high."""
    db = AdvisoryDB.load(_zip(tmp_path / "all.zip", RECORDS))
    grades = {
        r.advisory.id: (r.advisory.severity, r.advisory.rating)
        for name in ("demo-pkg", "other")
        for r in db.ranges_for(name)
    }
    assert grades["OSV-0002"] == (Severity.CRITICAL, "CVSS 9.8")
    assert grades["OSV-0003"] == (Severity.MEDIUM, "GHSA moderate")
    assert grades["OSV-0001"] == (Severity.HIGH, "unrated (treated as high)")


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ("AV:N/AC:L/Au:N/C:P/I:P/A:P", None),
    ],
)
def test_cvss3_base_scores_match_the_specification(vector: str, score: float | None) -> None:
    """Base scores agree with FIRST's calculator for common vectors."""
    assert cvss3_base_score(vector) == score


def test_a_directory_holding_export_zips_is_a_source(tmp_path: Path) -> None:
    """The data dir layout after --update-db: a directory with the downloaded zip."""
    (tmp_path / "advisories").mkdir()
    _zip(tmp_path / "advisories" / "osv-pypi.zip", RECORDS)
    assert len(AdvisoryDB.load(tmp_path / "advisories")) == 3


def test_yaml_directory_keeps_versions_as_text(tmp_path: Path) -> None:
    """An unquoted 2.10 in YAML is the version 2.10, not the float 2.1."""
    vulns = tmp_path / "vulns" / "pkg"
    vulns.mkdir(parents=True)
    (vulns / "PYSEC-1.yaml").write_text(
        "id: PYSEC-1\naffected:\n- package: {ecosystem: PyPI, name: pkg}\n"
        "  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: 2.10\n"
        "    - fixed: 2.12\n  versions: [2.10, 2.11]\n"
    )
    db = AdvisoryDB.load(tmp_path / "vulns")
    assert db.affecting("pkg", Version("2.10"))
    assert db.affecting("pkg", Version("2.1")) == []


def test_shared_snapshot_finds_known_advisories(advisory_db: AdvisoryDB) -> None:
    """The PyPA snapshot: requests 2.25.0 leaks Proxy-Authorization (CVE-2023-32681)."""
    assert len(advisory_db) > 2000
    [hit] = [
        r
        for r in advisory_db.affecting("requests", Version("2.25.0"))
        if r.advisory.id == "PYSEC-2023-74"
    ]
    assert "CVE-2023-32681" in hit.advisory.aliases
    assert hit.fixed == (Version("2.31.0"),)
    assert not [
        r
        for r in advisory_db.affecting("requests", Version("2.31.0"))
        if r.advisory.id == "PYSEC-2023-74"
    ]


def test_dependency_findings_name_advisory_aliases_and_fix(tmp_path: Path) -> None:
    """A finding names the advisory, its aliases and the fixed versions."""
    db = AdvisoryDB.load(_zip(tmp_path / "all.zip", RECORDS))
    project = tmp_path / "p"
    project.mkdir()
    (project / "requirements.txt").write_text("demo-pkg==1.2\n")
    [finding] = scan_path(project, advisories=db).findings
    assert finding.advisory is not None
    assert (finding.advisory.id, finding.advisory.aliases, finding.advisory.fixed) == (
        "OSV-0001",
        ("CVE-2099-0001",),
        ("2.0.0",),
    )
    assert "OSV-0001" in finding.message and "CVE-2099-0001" in finding.message
    assert finding.fix == "Upgrade demo-pkg to 2.0.0 or later."


@pytest.mark.parametrize("make", ["missing", "empty", "not-a-zip"])
def test_unusable_databases_are_scan_errors(tmp_path: Path, make: str) -> None:
    """A misconfigured database fails loudly (the gate must not pass unchecked deps)."""
    path = tmp_path / "db"
    if make == "empty":
        path.mkdir()
    elif make == "not-a-zip":
        path = tmp_path / "db.zip"
        path.write_text("garbage")
    with pytest.raises(ScanError):
        AdvisoryDB.load(path)


@pytest.fixture
def export_server(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on loopback serving an OSV export zip."""
    site = tmp_path / "site"
    site.mkdir()
    _zip(site / "all.zip", RECORDS)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(site), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_update_db_downloads_the_export_into_the_data_dir(
    tmp_path: Path, export_server: str
) -> None:
    """--update-db stores a checked zip under DATA_DIR/advisories, loadable from there."""
    data = tmp_path / "data"
    saved = update_advisory_db(data, url=f"{export_server}/all.zip", timeout=10)
    assert saved == data / "advisories" / osv_update.EXPORT_NAME
    assert len(AdvisoryDB.load(data / "advisories")) == 3
    assert [p.name for p in (data / "advisories").iterdir()] == [osv_update.EXPORT_NAME]


def test_update_db_failures_are_clear_and_leave_no_partial_file(
    tmp_path: Path, export_server: str
) -> None:
    """Unreachable hosts, HTTP errors and non-zip bodies are ScanErrors; nothing is left."""
    data = tmp_path / "data"
    with pytest.raises(ScanError, match="could not download the OSV advisory export") as e:
        update_advisory_db(data, url="http://127.0.0.1:9/all.zip", timeout=5)
    assert "--advisories" in e.value.hint
    with pytest.raises(ScanError, match="could not download"):
        update_advisory_db(data, url=f"{export_server}/missing.zip", timeout=5)
    (tmp_path / "site" / "page.zip").write_text("not a zip")
    with pytest.raises(ScanError, match="did not return a zip"):
        update_advisory_db(data, url=f"{export_server}/page.zip", timeout=5)
    assert list((data / "advisories").iterdir()) == []


def test_a_local_version_is_matched_as_its_public_release(tmp_path: Path) -> None:
    """`1.7+vendor1` is a build of 1.7: inside `last_affected: 1.7`, in a `versions` list
    naming 1.7, and outside `fixed: 2.0.0` once at 2.0.0+vendor1."""
    listed = _record("OSV-0005", "listed", [])
    listed["affected"][0]["versions"] = ["1.7"]
    db = AdvisoryDB([*RECORDS, listed])
    assert [r.advisory.id for r in db.affecting("other", Version("1.7+vendor1"))] == ["OSV-0002"]
    assert db.affecting("other", Version("1.7.1+vendor1")) == []
    assert [r.advisory.id for r in db.affecting("listed", Version("1.7+x"))] == ["OSV-0005"]
    assert db.affecting("demo-pkg", Version("2.0.0+vendor1")) == []
    assert db.affecting("demo-pkg", Version("1.9+vendor1"))


def test_introduced_zero_covers_every_version_pre_releases_of_zero_too(tmp_path: Path) -> None:
    """OSV's `introduced: "0"` is every version: 0a1, 0.0.0rc1 and 0.dev1 sort below the
    version 0 in PEP 440, and are affected all the same."""
    db = AdvisoryDB(RECORDS)
    for low in ("0a1", "0.0.0rc1", "0.dev1", "0.0"):
        assert [r.advisory.id for r in db.affecting("demo-pkg", Version(low))] == ["OSV-0001"]


def test_a_record_with_an_unparsable_huge_version_is_skipped_not_fatal() -> None:
    """An event or listed version past int()'s digit limit is dropped as an invalid one is:
    one damaged record neither crashes a scan nor hides the others."""
    huge = "1." + "0" * 5000
    damaged = _record("OSV-0009", "demo-pkg", [{"introduced": "0"}, {"fixed": huge}])
    damaged["affected"][0]["versions"] = [huge]
    db = AdvisoryDB([*RECORDS, damaged])
    found = sorted(r.advisory.id for r in db.affecting("demo-pkg", Version("1.0")))
    assert found == ["OSV-0001", "OSV-0009"]
