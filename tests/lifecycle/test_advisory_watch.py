"""The advisory watch in process: a real SQLite store, audit log, monitor and alerts index."""

from __future__ import annotations

import asyncio
import http.server
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine

from advisory_support import osv, write_export, write_zip
from donjon.audit import AuditEvent, AuditLog
from donjon.audit.events import InvocationLog
from donjon.bundle import BundleStore
from donjon.config import AdvisoryWatchSettings, MonitorSettings, Settings
from donjon.lifecycle.advisory_watch import AdvisoryWatch
from donjon.monitor.alerts import AlertStore
from donjon.monitor.service import start_monitor
from donjon.store import FunctionStore, VulnerabilityStore
from donjon.supply import ComponentRef, SupplyChain, SupplyError
from monitor_support import make_engine, make_log


@dataclass
class World:
    engine: Engine
    audit: AuditLog
    functions: FunctionStore
    bundles: BundleStore
    settings: Settings
    data: Path

    def watch(self) -> AdvisoryWatch:
        """A watch as a (re)started node makes it."""
        store = VulnerabilityStore(self.engine)
        return AdvisoryWatch(self.settings, self.functions, self.bundles, store, self.audit)

    def deploy(
        self, name: str, version: int, vendored: dict[str, str], site: str = ".deps"
    ) -> None:
        """A stored version whose bundle vendors `vendored` (package -> version) in
        `site` (`.` for its root, as `pip install -t .` installs)."""
        digest = f"{name}{version}".ljust(64, "0")
        for package, at in vendored.items():
            meta = self.bundles.path(digest) / site / f"{package}-{at}.dist-info"
            meta.mkdir(parents=True)
            (meta / "METADATA").write_text(
                f"Metadata-Version: 2.1\nName: {package}\nVersion: {at}\n"
            )
        self.functions.add_version(name, version, digest, "{}", "key:0123456789abcdef")

    def records(self, action: str) -> list[dict[str, Any]]:
        return [r for r in self.audit.tail(1000) if r["action"] == action]

    def alerts(self) -> list[dict[str, Any]]:
        return AlertStore(self.engine).listing(kind="dependency.vulnerable").alerts


def _world(tmp_path: Path, **watch: Any) -> World:
    engine = make_engine(tmp_path)
    data = tmp_path / "advisories-export"
    source = watch.pop("source_url", None)
    settings = Settings(
        data_dir=tmp_path,
        url="https://127.0.0.1:1",
        api_key=None,
        advisories=None if source else data,
        advisory_watch=AdvisoryWatchSettings(source_url=source, **watch),
    )
    return World(
        engine, make_log(engine), FunctionStore(engine), BundleStore(tmp_path / "b"), settings, data
    )


def _run(world: World, steps: Callable[[], Awaitable[None]]) -> None:
    """Run `steps` with the audit writer and the node's monitor going, as on a node."""

    async def go() -> None:
        world.audit.start()
        service = await start_monitor(MonitorSettings(), world.audit, AlertStore(world.engine))
        try:
            await steps()
            await service.monitor.settle()
        finally:
            await service.close()
            world.audit.stop()

    asyncio.run(go())


async def _look(watch: AdvisoryWatch) -> None:
    await watch.prepare()
    await watch.check()


def test_an_advisory_added_for_a_deployed_version_is_alerted_once(tmp_path: Path) -> None:
    """New data covering a vendored version: one record and one alert naming the function,
    version, package, advisory and fix; looking again, or after a restart, adds none."""
    world = _world(tmp_path)
    write_export(world.data, osv("GHSA-old", "otherpkg"))
    world.deploy("resize", 1, {"leftpad": "1.0"})

    async def steps() -> None:
        watch = world.watch()
        await _look(watch)
        assert world.records("advisory.vulnerable") == []
        write_export(
            world.data, osv("GHSA-old", "otherpkg"), osv("GHSA-new", "leftpad", aliases=("CVE-7",))
        )
        done = await watch.check()
        assert (done.changed, done.new) == (True, 1)
        await watch.check()
        await _look(world.watch())  # a restart

    _run(world, steps)
    (record,) = world.records("advisory.vulnerable")
    assert record["target"] == "resize@1"
    assert record["detail"]["advisory"] == "GHSA-new"
    (alert,) = world.alerts()
    detail = alert["detail"]
    assert alert["subject"] == "function:resize"
    assert (detail["version"], detail["package"], detail["installed"]) == ("1", "leftpad", "1.0")
    assert (detail["advisory"], detail["aliases"], detail["fixed"]) == (
        "GHSA-new",
        ["CVE-7"],
        ["2.0"],
    )
    assert alert["evidence"] == [record["seq"]]


def test_a_distribution_installed_at_the_bundle_root_is_watched(tmp_path: Path) -> None:
    """A Lambda-style bundle (`pip install -t .`: the dist-info beside the code, no
    `.deps/`): new data covering its version raises the alert too."""
    world = _world(tmp_path)
    write_export(world.data, osv("GHSA-old", "otherpkg"))
    world.deploy("resize", 1, {"leftpad": "1.0"}, site=".")

    async def steps() -> None:
        watch = world.watch()
        await _look(watch)
        write_export(world.data, osv("GHSA-old", "otherpkg"), osv("GHSA-new", "leftpad"))
        assert (await watch.check()).new == 1

    _run(world, steps)
    (alert,) = world.alerts()
    assert (alert["subject"], alert["detail"]["package"]) == ("function:resize", "leftpad")


def test_a_withdrawn_advisory_clears_the_finding(tmp_path: Path) -> None:
    """The advisory withdrawn: the finding is cleared and audited, and no alert is raised."""
    world = _world(tmp_path)
    write_export(world.data, osv("GHSA-other", "otherpkg"))
    world.deploy("resize", 1, {"leftpad": "1.0"})

    async def steps() -> None:
        watch = world.watch()
        await _look(watch)
        write_export(world.data, osv("GHSA-other", "otherpkg"), osv("GHSA-1", "leftpad"))
        await watch.check()
        write_export(
            world.data, osv("GHSA-other", "otherpkg"), osv("GHSA-1", "leftpad", withdrawn=True)
        )
        done = await watch.check()
        assert done.cleared == 1

    _run(world, steps)
    assert VulnerabilityStore(world.engine).open_findings() == []
    (cleared,) = world.records("advisory.cleared")
    assert (cleared["target"], cleared["detail"]["advisory"]) == ("resize@1", "GHSA-1")
    assert len(world.alerts()) == 1


def test_a_version_first_seen_under_the_data_its_deploy_scan_read_is_not_alerted(
    tmp_path: Path,
) -> None:
    """Findings its deployer was shown (same data) are recorded and marked, not alerted."""
    world = _world(tmp_path)
    write_export(world.data, osv("GHSA-1", "leftpad"))
    world.deploy("resize", 1, {"leftpad": "1.0"})
    _run(world, lambda: _look(world.watch()))
    assert world.records("advisory.vulnerable") == [] and world.alerts() == []
    (known,) = world.records("advisory.known")
    assert known["detail"]["findings"][0]["advisory"] == "GHSA-1"
    (found,) = VulnerabilityStore(world.engine).open_findings(["resize"])
    assert found.advisory == "GHSA-1"


def test_two_advisories_on_one_function_are_two_alerts(tmp_path: Path) -> None:
    """The monitor's deduplication keeps findings of different advisories apart."""
    world = _world(tmp_path)
    write_export(world.data, osv("GHSA-0", "otherpkg"))
    world.deploy("resize", 1, {"leftpad": "1.0", "rightpad": "3.0"})

    async def steps() -> None:
        watch = world.watch()
        await _look(watch)
        write_export(
            world.data,
            osv("GHSA-0", "otherpkg"),
            osv("GHSA-1", "leftpad"),
            osv("GHSA-2", "rightpad", fixed=None),
        )
        await watch.check()

    _run(world, steps)
    alerts = world.alerts()
    assert sorted(a["detail"]["advisory"] for a in alerts) == ["GHSA-1", "GHSA-2"]
    assert all(a["subject"] == "function:resize" for a in alerts)


def test_two_nodes_sharing_the_database_alert_a_finding_once(tmp_path: Path) -> None:
    """Two watches over one database both see the change; one writes the finding's record."""
    world = _world(tmp_path)
    write_export(world.data, osv("GHSA-0", "otherpkg"))
    world.deploy("resize", 1, {"leftpad": "1.0"})

    async def steps() -> None:
        first, second = world.watch(), world.watch()
        await _look(first)
        await _look(second)
        write_export(world.data, osv("GHSA-0", "otherpkg"), osv("GHSA-1", "leftpad"))
        news = await asyncio.gather(first.check(), second.check())
        assert sorted(n.new for n in news) == [0, 1]

    _run(world, steps)
    assert len(world.records("advisory.vulnerable")) == 1
    assert len(world.alerts()) == 1


@pytest.fixture
def export_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on loopback serving `served/osv.zip` (its URL, and that file)."""
    served = tmp_path / "served"
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/osv.zip", served / "osv.zip"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_fetched_export_is_checked_like_any_other_change(
    tmp_path: Path, export_server: tuple[str, Path]
) -> None:
    """DONJON_ADVISORY_SOURCE_URL: the export is fetched into the data dir, audited, and
    a version it newly covers is alerted; a fresh export is not fetched again."""
    url, served = export_server
    world = _world(tmp_path, source_url=url, refresh_s=3600.0)
    world.deploy("resize", 1, {"leftpad": "1.0"})
    write_zip(served, osv("GHSA-0", "otherpkg"))

    async def steps() -> None:
        watch = world.watch()
        await watch.prepare()
        assert await watch.fetch() is True
        await watch.check()
        write_zip(served, osv("GHSA-0", "otherpkg"), osv("GHSA-1", "leftpad"))
        assert await watch.fetch() is False  # fetched less than refresh_s ago
        export = tmp_path / "advisories" / "osv-pypi.zip"
        old = export.stat().st_mtime - 7200
        os.utime(export, (old, old))
        assert await watch.fetch() is True
        await watch.check()

    _run(world, steps)
    assert [r["outcome"] for r in world.records("advisory.refresh")] == ["ok", "ok"]
    (alert,) = world.alerts()
    assert alert["detail"]["advisory"] == "GHSA-1"


def test_data_that_does_not_load_is_audited_once_and_changes_nothing(tmp_path: Path) -> None:
    """A broken export: one `advisory.data` failure, the open findings kept as they were."""
    world = _world(tmp_path)
    write_export(world.data, osv("GHSA-0", "otherpkg"))
    world.deploy("resize", 1, {"leftpad": "1.0"})

    async def steps() -> None:
        watch = world.watch()
        await _look(watch)
        write_export(world.data, osv("GHSA-0", "otherpkg"), osv("GHSA-1", "leftpad"))
        await watch.check()
        (world.data / "broken.json").write_text("{not json")
        assert (await watch.check()).new == 0
        assert (await watch.check()).new == 0

    _run(world, steps)
    (failed,) = world.records("advisory.data")[1:]
    assert failed["outcome"] == "failed"
    assert [f.advisory for f in VulnerabilityStore(world.engine).open_findings()] == ["GHSA-1"]


def test_data_touched_but_not_changed_checks_nothing(tmp_path: Path) -> None:
    """New modification times with the same content: no change, no version checked again."""
    world = _world(tmp_path)
    write_export(world.data, osv("GHSA-0", "otherpkg"))
    world.deploy("resize", 1, {"leftpad": "1.0"})

    async def steps() -> None:
        watch = world.watch()
        await _look(watch)
        for record in world.data.iterdir():
            os.utime(record, (1_000_000, 1_000_000))
        done = await watch.check()
        assert (done.changed, done.checked) == (False, 0)

    _run(world, steps)
    assert world.records("advisory.data") == []


def test_a_download_in_progress_is_no_change(tmp_path: Path) -> None:
    """A partial `.download-*.zip` beside the export is not looked at; its swap-in is."""
    world = _world(tmp_path)
    write_export(world.data, osv("GHSA-0", "otherpkg"))
    world.deploy("resize", 1, {"leftpad": "1.0"})

    async def steps() -> None:
        watch = world.watch()
        await _look(watch)
        partial = world.data / ".download-x1.zip"
        partial.write_bytes(b"PK\x03\x04 half a zip")
        assert (await watch.check()).changed is False
        partial.unlink()
        write_zip(world.data / "osv-pypi.zip", osv("GHSA-1", "leftpad"))
        assert (await watch.check()).new == 1

    _run(world, steps)
    assert [r["outcome"] for r in world.records("advisory.data")] == ["ok"]


def test_a_record_that_failed_is_written_by_a_later_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit write failing once after both findings were opened: a later watch (a
    restart) writes each finding's record, and its alert, exactly once."""
    world = _world(tmp_path)
    write_export(world.data, osv("GHSA-0", "otherpkg"))
    world.deploy("resize", 1, {"leftpad": "1.0", "rightpad": "3.0"})
    real = world.audit.record
    failed: list[AuditEvent] = []

    async def flaky(event: AuditEvent, log: InvocationLog | None = None) -> None:
        if event.action == "advisory.vulnerable" and not failed:
            failed.append(event)
            raise OSError("the audit writer is down")
        await real(event, log)

    async def steps() -> None:
        watch = world.watch()
        await _look(watch)
        write_export(
            world.data,
            osv("GHSA-0", "otherpkg"),
            osv("GHSA-1", "leftpad"),
            osv("GHSA-2", "rightpad", fixed=None),
        )
        monkeypatch.setattr(world.audit, "record", flaky)
        await watch.check()
        await _look(world.watch())  # a restart
        await _look(world.watch())

    _run(world, steps)
    assert len(failed) == 1
    records = world.records("advisory.vulnerable")
    assert sorted(r["detail"]["advisory"] for r in records) == ["GHSA-1", "GHSA-2"]
    assert sorted(a["detail"]["advisory"] for a in world.alerts()) == ["GHSA-1", "GHSA-2"]


def test_an_advisory_id_too_long_to_keep_leaves_the_others_alerted(tmp_path: Path) -> None:
    """An advisory id longer than the table's column is skipped; the next one is alerted."""
    world = _world(tmp_path)
    write_export(world.data, osv("GHSA-0", "otherpkg"))
    world.deploy("resize", 1, {"leftpad": "1.0"})

    async def steps() -> None:
        watch = world.watch()
        await _look(watch)
        write_export(
            world.data,
            osv("GHSA-0", "otherpkg"),
            osv("GHSA-" + "x" * 200, "leftpad"),
            osv("GHSA-1", "leftpad"),
        )
        assert (await watch.check()).new == 1

    _run(world, steps)
    assert [f.advisory for f in VulnerabilityStore(world.engine).open_findings()] == ["GHSA-1"]
    (alert,) = world.alerts()
    assert alert["detail"]["advisory"] == "GHSA-1"


@pytest.fixture
def dripping_server() -> Iterator[str]:
    """An HTTP server on loopback that answers with a byte every 50 ms, never ending."""
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            try:
                while not stop.wait(0.05):
                    self.wfile.write(b"P")
                    self.wfile.flush()
            except OSError:
                pass  # the client gave up

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/osv.zip"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_source_dripping_bytes_fails_the_fetch_at_its_deadline(
    tmp_path: Path, dripping_server: str
) -> None:
    """Each read is quick but the download never ends: the fetch fails at its overall
    deadline, is audited as failed, and leaves no export behind."""
    world = _world(tmp_path, source_url=dripping_server, refresh_s=3600.0)

    async def steps() -> None:
        watch = world.watch()
        watch.fetch_deadline_s = 0.5
        assert await watch.fetch() is False

    _run(world, steps)
    (failed,) = world.records("advisory.refresh")
    assert failed["outcome"] == "failed"
    assert "did not finish downloading" in failed["detail"]["error"]
    assert list((tmp_path / "advisories").iterdir()) == []


def test_a_source_url_httpx_cannot_parse_is_an_audited_failure(tmp_path: Path) -> None:
    """A URL httpx refuses: the fetch fails like any other (audited), it does not raise."""
    world = _world(tmp_path, source_url="http://[::1/osv.zip", refresh_s=3600.0)

    async def steps() -> None:
        assert await world.watch().fetch() is False

    _run(world, steps)
    (failed,) = world.records("advisory.refresh")
    assert failed["outcome"] == "failed"


class _DamagedSboms:
    """Stands in for a node's SBOM store in which one version's SBOM cannot be read."""

    def components(self, name: str, version: int) -> list[ComponentRef]:
        if name == "broken":
            raise SupplyError(f"{name}@{version}: the stored SBOM is not CycloneDX JSON")
        return [ComponentRef("requests", "2.0.0", "pkg:pypi/requests@2.0.0")]


def test_a_damaged_sbom_does_not_stop_the_check_of_the_others(tmp_path: Path) -> None:
    """A version whose SBOM cannot be read is read from its bundle instead; the other
    versions keep their SBOM's components (one bad row never blinds the watch)."""
    world = _world(tmp_path)
    world.deploy("broken", 1, {"urllib3": "1.0.0"})
    world.deploy("fine", 1, {})
    store = VulnerabilityStore(world.engine)
    watch = AdvisoryWatch(
        world.settings,
        world.functions,
        world.bundles,
        store,
        world.audit,
        supply=cast("SupplyChain", _DamagedSboms()),
    )
    records = {(r.name, r.version): r for r in world.functions.current()}
    found = watch._components(records)
    assert [(c.name, str(c.version)) for c in found[("broken", 1)]] == [("urllib3", "1.0.0")]
    assert [(c.name, str(c.version)) for c in found[("fine", 1)]] == [("requests", "2.0.0")]
