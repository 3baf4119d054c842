"""Attacks that try to hide a vulnerable vendored distribution from the supply chain's
evidence on a real node: the deploy gate, the SBOM and the advisory watch read the same
distributions, however their metadata is laid out."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from advisory_support import osv, write_export
from harness import ADVISORIES, LiveNode, run_cli, start_node

#: Packages no real advisory names: only this file's exports speak of them.
KNOWN = "donjon-hide-known"  # in the export from the start: the gate must refuse it
LATER = "donjon-hide-later"  # in the export only after the deploy: the watch must alert


def _archive(name: str, files: dict[str, str]) -> bytes:
    """A bundle (tar.gz) of function `name` holding `files` beside its manifest."""
    members = {
        "donjon.yaml": f"name: {name}\nhandler: main.handler\n",
        "main.py": "def handler(event, context):\n    return 1\n",
        **files,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _wait(what: str, probe: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, Path]]:
    """A node whose advisory export names KNOWN from the start (its path, to change)."""
    tmp = tmp_path_factory.mktemp("supply-hiding")
    export = write_export(tmp / "osv", osv("GHSA-hide-known", KNOWN))
    data_dir = tmp / "data"
    data_dir.mkdir()
    node = start_node(data_dir, {"DONJON_ADVISORIES": str(export), "DONJON_ADVISORY_WATCH_S": "1"})
    try:
        yield node, export
    finally:
        node.stop()


def _deploy(node: LiveNode, name: str, files: dict[str, str]) -> Any:
    with node.client() as c:
        return c.post("/v1/functions", content=_archive(name, files))


@pytest.mark.parametrize(
    "metadata",
    [
        f"metadata-version: 2.1\nname: {KNOWN}\nversion: 1.0\n",
        f"METADATA-VERSION: 2.1\nNAME: {KNOWN}\nVERSION: 1.0\n",
        f"Metadata-Version: 2.1\n \t\nName: {KNOWN}\nVersion: 1.0\n",
        f"Metadata-Version: 2.1\nSummary: x\f\nName: {KNOWN}\nVersion: 1.0\n",
        f"Metadata-Version: 2.1\nName: {KNOWN}\nVersion: 1.0\n\nA NUL \0 in the body\n",
    ],
    ids=["lower", "upper", "blank-looking-line", "form-feed", "nul-in-body"],
)
def test_cannot_hide_a_known_vulnerable_distribution_by_the_case_of_its_fields(
    world: tuple[LiveNode, Path], metadata: str
) -> None:
    """METADATA is read as email headers (importlib.metadata and the SBOM read it so):
    field names in another case, or after a line of only blanks (a continuation, not the
    end of the headers) or a form feed (not a line break there), or with a NUL byte in
    the description (not a binary file for them), are still checked."""
    node, _ = world
    files = {
        f".deps/{KNOWN}-1.0.dist-info/METADATA": metadata,
        ".deps/donjon_hide_known/__init__.py": "",
    }
    r = _deploy(node, "hide-case", files)
    assert r.status_code == 422, r.text
    assert "GHSA-hide-known" in r.json()["report"]


@pytest.mark.parametrize("site", [".deps/", ""], ids=["deps", "root"])
def test_cannot_hide_a_distribution_from_the_sbom_and_the_watch_as_an_egg_info(
    world: tuple[LiveNode, Path], site: str
) -> None:
    """A distribution installed the legacy way (`*.egg-info/PKG-INFO`, as pip installed an
    sdist before wheels) is importable like a wheel's: the SBOM lists it, and an advisory
    published after the deploy alerts it."""
    node, export = world
    tag = "deps" if site else "root"
    name, package = f"hide-egg-{tag}", f"{LATER}-{tag}"
    module = package.replace("-", "_")
    files = {
        f"{site}{package}-1.0-py3.11.egg-info/PKG-INFO": (
            f"Metadata-Version: 1.1\nName: {package}\nVersion: 1.0\n"
        ),
        f"{site}{package}-1.0-py3.11.egg-info/installed-files.txt": f"../{module}.py\n",
        f"{site}{module}.py": "X = 1\n",
    }
    r = _deploy(node, name, files)
    assert r.status_code == 201, r.text
    with node.client() as c:
        sbom = c.get(f"/v1/functions/{name}/sbom")
    assert sbom.status_code == 200, sbom.text
    components = {(c["name"], c["version"]) for c in sbom.json()["components"]}
    assert (package, "1.0") in components

    write_export(export, osv("GHSA-hide-known", KNOWN), osv(f"GHSA-hide-{tag}", package))

    def alerted() -> bool:
        out = run_cli(node.env(), "alerts", "--json", "--kind", "dependency.vulnerable")
        return any(a["subject"] == f"function:{name}" for a in json.loads(out.stdout))

    _wait("the watch's alert", alerted)
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        rows = list(conn.execute("SELECT 1 FROM advisory_checked WHERE function = ?", (name,)))
    assert rows


@pytest.mark.parametrize(
    ("package", "version", "advisory"),
    [
        ("py", "1.11.0+vendor1", "PYSEC-2022-42969"),  # introduced 0, last_affected 1.11.0
        ("designate", "2015.1.0b2+vendor1", "PYSEC-2019-243"),  # a `versions` list only
    ],
)
def test_cannot_hide_a_vulnerable_release_behind_a_local_version_label(
    tmp_path: Path, package: str, version: str, advisory: str
) -> None:
    """`1.11.0+vendor1` is a local build of 1.11.0 (PEP 440: the label is ignored when
    matched against public versions): the real CLI, on the PyPA snapshot, still finds the
    advisory of 1.11.0, whether the record bounds it by `last_affected` or lists it."""
    info = tmp_path / "fn" / ".deps" / f"{package}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    assert advisory in _scan_advisories(tmp_path)


def _scan(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The real `donjon scan` of `tmp_path/fn` on the PyPA snapshot (JSON)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
    env["DONJON_DATA_DIR"] = str(tmp_path / "data")
    return run_cli(
        env,
        "scan",
        str(tmp_path / "fn"),
        "--advisories",
        str(ADVISORIES / "vulns"),
        "--format",
        "json",
        check=False,
    )


def _scan_advisories(tmp_path: Path) -> set[str]:
    """The advisories the real `donjon scan` of `tmp_path/fn` finds on the PyPA snapshot."""
    done = _scan(tmp_path)
    return {f["advisory"]["id"] for f in json.loads(done.stdout)["findings"] if f["advisory"]}


@pytest.mark.parametrize("line", ["junk==1.", "pyyaml>=1.", "leftpad==1.*,!=2."])
def test_cannot_hide_a_files_pins_behind_one_huge_version(tmp_path: Path, line: str) -> None:
    """A version past int()'s 4,300-digit limit made the whole requirements file unreadable
    (one note: PyYAML==5.3 beside it never checked), or crashed the scan: that line alone
    is skipped, with a note."""
    (tmp_path / "fn").mkdir()
    huge = line + "0" * 5000
    (tmp_path / "fn" / "requirements.txt").write_text(f"PyYAML==5.3\n{huge}\n")
    assert "PYSEC-2021-142" in _scan_advisories(tmp_path)


def test_cannot_hide_a_requirements_file_behind_a_nul_byte(tmp_path: Path) -> None:
    """A NUL byte in a comment made the scan take requirements.txt for a binary file and
    skip it, while pip installs from it all the same: its pins are still checked."""
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "requirements.txt").write_bytes(b"PyYAML==5.3\n# \0 note\n")
    assert "PYSEC-2021-142" in _scan_advisories(tmp_path)


@pytest.mark.parametrize(
    "rel", ["test-requirements.txt", "dev_requirements.in", "requirements/prod.txt"]
)
def test_cannot_hide_pins_in_a_requirements_file_named_another_way(
    tmp_path: Path, rel: str
) -> None:
    """Requirements files as projects name them (OpenStack's test-requirements.txt, a
    requirements/ folder) are read: only requirements*.txt were, so their pins were never
    checked by `donjon scan`."""
    path = tmp_path / "fn" / rel
    path.parent.mkdir(parents=True)
    path.write_text("PyYAML==5.3\n")
    assert "PYSEC-2021-142" in _scan_advisories(tmp_path)


def test_cannot_hide_pins_in_a_requirements_file_past_the_read_limit(tmp_path: Path) -> None:
    """A requirements file padded past the 2 MiB the scanner reads was skipped with a
    note, its pins unchecked, while pip installs from it: the scan now fails, naming it."""
    (tmp_path / "fn").mkdir()
    padding = "# " + "x" * 100 + "\n"
    (tmp_path / "fn" / "requirements.txt").write_text("PyYAML==5.3\n" + padding * 25_000)
    done = _scan(tmp_path)
    assert done.returncode != 0
    assert "requirements.txt" in done.stderr and "dependency declarations" in done.stderr


@pytest.mark.parametrize(
    "line",
    [
        "PyYAML @ https://files.example/p/PyYAML-5.3-cp311-cp311-manylinux_2_17_x86_64.whl",
        "pyyaml @ https://files.example/p/PyYAML-5.3.tar.gz#sha256=e9df",
    ],
)
def test_cannot_hide_a_pin_behind_a_direct_url_to_its_archive(tmp_path: Path, line: str) -> None:
    """`name @ URL` naming a wheel or an sdist installs exactly the version its file name
    gives: that version is checked, not skipped as a URL."""
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "requirements.txt").write_text(line + "\n")
    assert "PYSEC-2021-142" in _scan_advisories(tmp_path)
