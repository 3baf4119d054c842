"""The advisory watch on a real node: a new DONJON_ADVISORIES export alerts once."""

from __future__ import annotations

import functools
import http.server
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from advisory_support import bundle_archive, osv, write_export, write_zip
from harness import LiveNode, run_cli, start_node

#: A package no real advisory names: only the test's exports speak of it.
PACKAGE = "donjon-watch-probe"
ADVISORY = "GHSA-dwtc-test-0001"


def _wait(what: str, probe: Any, timeout_s: float = 90.0) -> Any:
    """Poll `probe` until it returns something true; fail naming `what` past the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _db(node: LiveNode, query: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(node.data_dir / "donjon.db") as conn:
        return list(conn.execute(query, args))


def _alerts(node: LiveNode) -> list[dict[str, Any]]:
    out = run_cli(node.env(), "alerts", "--json", "--kind", "dependency.vulnerable")
    found: list[dict[str, Any]] = json.loads(out.stdout)
    return found


def _audited(node: LiveNode, action: str) -> list[dict[str, Any]]:
    out = run_cli(node.env(), "audit", "tail", "-n", "5000", "--output", "json")
    return [r for r in json.loads(out.stdout) if r["action"] == action]


@pytest.mark.slow
def test_a_new_export_covering_a_deployed_version_alerts_once(tmp_path: Path) -> None:
    """Deploy a function vendoring a version the first export does not cover, then give
    the node a second export that does: one alert, one audit record, the marker in
    `donjon ls` and the advisory in `donjon describe`, the deploy gate judging by the new
    export; a restart raises nothing again."""
    export = write_export(tmp_path / "osv", osv("GHSA-dwtc-unrelated", "some-other-pkg"))
    env = {"DONJON_ADVISORIES": str(export), "DONJON_ADVISORY_WATCH_S": "1"}
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    node = start_node(data_dir, env)
    try:
        with node.client() as c:
            r = c.post("/v1/functions", content=bundle_archive("watched", {PACKAGE: "1.0"}))
        assert r.status_code == 201, r.text
        _wait(
            "the watch to check the new version",
            lambda: _db(node, "SELECT 1 FROM advisory_checked WHERE function = 'watched'"),
        )
        assert _alerts(node) == []
        write_export(
            export,
            osv("GHSA-dwtc-unrelated", "some-other-pkg"),
            osv(ADVISORY, PACKAGE, fixed="1.1", aliases=("CVE-2099-0001",)),
        )
        (alert,) = _wait("the alert", lambda: _alerts(node))
        assert alert["subject"] == "function:watched"
        assert alert["detail"]["advisory"] == ADVISORY
        assert alert["detail"]["fixed"] == ["1.1"]
        (record,) = _audited(node, "advisory.vulnerable")
        assert record["target"] == "watched@1"
        assert (record["detail"]["package"], record["detail"]["installed"]) == (PACKAGE, "1.0")
        assert record["detail"]["aliases"] == ["CVE-2099-0001"]

        (listed,) = json.loads(run_cli(node.env(), "ls", "--output", "json").stdout)
        assert listed["vulnerable"] is True
        assert [a["advisory"] for a in listed["advisories"]] == [ADVISORY]
        table = run_cli(node.env(), "ls").stdout
        assert "VULNERABLE" in table and "yes (1)" in table
        described = run_cli(node.env(), "describe", "watched").stdout
        assert ADVISORY in described and "fixed in 1.1" in described

        with node.client() as c:  # the deploy gate reads the new export too
            r = c.post("/v1/functions", content=bundle_archive("watched-two", {PACKAGE: "1.0"}))
        assert r.status_code == 422, r.text
        assert ADVISORY in r.json()["report"]

        node.stop()
        restarted = time.time()
        node.serve_again(env)
        _wait(
            "the watch's first look after the restart",
            lambda: _db(node, "SELECT 1 FROM advisory_watch WHERE checked_at > ?", restarted),
        )
        assert len(_alerts(node)) == 1
        assert len(_audited(node, "advisory.vulnerable")) == 1
    finally:
        node.stop()


@pytest.fixture
def export_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on loopback serving `served/all.zip` (its URL, and that file)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/all.zip", served / "all.zip"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.slow
def test_a_node_fetching_its_export_alerts_what_a_new_export_covers(
    tmp_path: Path, export_server: tuple[str, Path]
) -> None:
    """DONJON_ADVISORY_SOURCE_URL on a node that starts with no advisory data: the export
    is fetched and used (by the gate too); once the next fetch brings an advisory for a
    deployed version, that version is alerted."""
    url, served = export_server
    write_zip(served, osv("GHSA-dwtc-unrelated", "some-other-pkg"))
    env = {
        "DONJON_ADVISORIES": "",
        "DONJON_ADVISORY_SOURCE_URL": url,
        "DONJON_ADVISORY_WATCH_S": "1",
        "DONJON_ADVISORY_REFRESH_S": "3600",
    }
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    node = start_node(data_dir, env)
    export = data_dir / "advisories" / "osv-pypi.zip"
    try:
        _wait("the first fetch", lambda: _audited(node, "advisory.refresh"))
        _wait("the first look at the data", lambda: _db(node, "SELECT 1 FROM advisory_watch"))
        with node.client() as c:
            r = c.post("/v1/functions", content=bundle_archive("fetched", {PACKAGE: "1.0"}))
        assert r.status_code == 201, r.text
        _wait(
            "the watch to check the new version",
            lambda: _db(node, "SELECT 1 FROM advisory_checked WHERE function = 'fetched'"),
        )
        write_zip(served, osv(ADVISORY, PACKAGE, fixed="1.1"))
        old = time.time() - 7200  # as if fetched two hours ago: due again
        os.utime(export, (old, old))
        (alert,) = _wait("the alert", lambda: _alerts(node))
        assert (alert["subject"], alert["detail"]["advisory"]) == ("function:fetched", ADVISORY)
        outcomes = [r["outcome"] for r in _audited(node, "advisory.refresh")]
        assert outcomes == ["ok", "ok"]
    finally:
        node.stop()
