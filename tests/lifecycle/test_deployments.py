"""`Deployments` driven directly, without HTTP: a real SQLite store, bundle store and sandbox."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import event

from donjon.audit import AuditLog, SigningKey
from donjon.audit.changes import AuditedChanges
from donjon.bootstrap import initialize
from donjon.bundle import BundleStore, build_bundle
from donjon.bundle.archive import pack
from donjon.config import Settings
from donjon.identity import Principal, Role
from donjon.lifecycle import (
    DeployBlocked,
    DeployForbidden,
    Deployments,
    FunctionNotFound,
    SkipScanRefused,
    load_registry,
)
from donjon.manifest import ManifestError
from donjon.sandbox import SandboxHost, SandboxPool, compile_filters, detect_resource_control
from donjon.scan import ScanPolicy, ScanReport, scan_path
from donjon.store import FunctionStore, connect
from donjon.store.audit_outbox import AuditOutbox

DEV = Principal("dev1", "dev", Role.DEVELOPER)
ADMIN = Principal("adm1", "admin", Role.ADMIN)
INJECTION = "import os\ndef handler(event, context):\n    return os.system(event['cmd'])\n"

T = TypeVar("T")


class InProcessScanner:
    """The deploy-time scan, in this process (the node runs it in a helper)."""

    def scan(self, tree: Path) -> ScanReport:
        return scan_path(tree)


@dataclass
class Service:
    deployments: Deployments
    functions: FunctionStore
    bundles: BundleStore
    audit: AuditLog
    pool: SandboxPool

    def audited(self, action: str) -> list[dict[str, Any]]:
        return [r for r in self.audit.tail(1000) if r["action"] == action]

    async def call(self, name: str, event: object = None) -> Any:
        deployed = self.deployments.registry.get(name)
        assert deployed is not None
        meta = json.dumps(
            {
                "request_id": "r",
                "function": name,
                "version": deployed.record.version,
                "deadline": time.time() + 30,
            }
        ).encode()
        result = await self.pool.invoke(deployed.config, meta, json.dumps(event).encode(), 30)
        return json.loads(result.body)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(data_dir=tmp_path / "data", url="https://127.0.0.1:1", api_key=None)
    initialize(s)
    return s


def run(
    settings: Settings,
    scenario: Callable[[Service], Coroutine[Any, Any, T]],
    store: type[FunctionStore] = FunctionStore,
    *,
    outbox: bool = False,
) -> T:
    """Run `scenario` against a started service over the data dir of `settings`."""

    @asynccontextmanager
    async def started() -> AsyncIterator[Service]:
        engine = connect(settings.database_url)
        audit = AuditLog(engine, SigningKey.load(settings.audit_signing_key_path))
        functions = store(engine)
        bundles = BundleStore(settings.bundles_dir)
        registry, _ = load_registry(functions, bundles)
        changes = AuditedChanges(audit, AuditOutbox(engine)) if outbox else None
        deployments = Deployments(
            functions, bundles, registry, audit, ScanPolicy(), changes=changes
        )
        host = await asyncio.to_thread(SandboxHost.detect, settings.data_dir)
        pool = SandboxPool(detect_resource_control(), compile_filters(), host)
        audit.start()
        pool.start()
        deployments.start(pool, InProcessScanner())
        try:
            yield Service(deployments, functions, bundles, audit, pool)
        finally:
            deployments.stop()
            await pool.close()
            audit.stop()
            engine.dispose()

    async def go() -> T:
        async with started() as service:
            return await scenario(service)

    return asyncio.run(go())


def archive(root: Path, name: str, code: str, extra: str = "") -> bytes:
    root.mkdir(parents=True, exist_ok=True)
    (root / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\n{extra}")
    (root / "main.py").write_text(code)
    return build_bundle(root)[1]


def kept_bundles(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.bundles_dir.iterdir())


def test_deploy_serves_the_version_and_remove_undeploys_it(
    settings: Settings, tmp_path: Path
) -> None:
    """A deploy stores, switches to and audits the version; remove undoes all but history."""
    bundle = archive(tmp_path / "fn", "hello", "def handler(e, c):\n    return {'hi': e}\n")

    async def scenario(s: Service) -> None:
        done = await s.deployments.deploy(bundle, DEV, "req-1")
        assert (done.record.name, done.record.version) == ("hello", 1)
        assert done.report is not None and done.warnings == ()
        assert [r.version for r in s.functions.current()] == [1]
        assert await s.call("hello", 7) == {"hi": 7}
        deployed = [r for r in s.audited("function.deploy") if r["outcome"] == "ok"]
        assert deployed[-1]["target"] == "hello@1"
        assert deployed[-1]["actor"] == "key:dev1"
        assert deployed[-1]["detail"]["request_id"] == "req-1"

        await s.deployments.remove("hello", DEV, "req-2")
        assert s.deployments.registry.get("hello") is None
        assert s.functions.current() == []
        assert s.pool.running() == 0
        assert s.audited("function.delete")[-1]["target"] == "hello"
        with pytest.raises(FunctionNotFound):
            await s.deployments.remove("hello", DEV, "req-3")

    run(settings, scenario)


def test_a_new_version_replaces_the_old_one(settings: Settings, tmp_path: Path) -> None:
    """The second deploy of a function is version 2; calls reach it, in a fresh process."""
    code = "STATE = []\ndef handler(e, c):\n    STATE.append(1)\n    return [{v}, len(STATE)]\n"
    one = archive(tmp_path / "v1", "counter", code.format(v=1), "isolation: warm\n")
    two = archive(tmp_path / "v2", "counter", code.format(v=2), "isolation: warm\n")

    async def scenario(s: Service) -> None:
        await s.deployments.deploy(one, DEV, "r1")
        assert await s.call("counter") == [1, 1]
        assert await s.call("counter") == [1, 2]
        done = await s.deployments.deploy(two, DEV, "r2")
        assert done.record.version == 2
        assert await s.call("counter") == [2, 1]

    run(settings, scenario)


def test_the_same_bundle_again_is_a_no_op(settings: Settings, tmp_path: Path) -> None:
    """A redeploy of the digest the function runs stores, starts and switches nothing."""
    code = "STATE = []\ndef handler(e, c):\n    STATE.append(1)\n    return len(STATE)\n"
    bundle = archive(tmp_path / "same", "same", code, "isolation: warm\n")

    async def scenario(s: Service) -> None:
        first = await s.deployments.deploy(bundle, DEV, "r1")
        assert await s.call("same") == 1
        again = await s.deployments.deploy(bundle, DEV, "r2")
        assert again.unchanged and not first.unchanged
        assert again.record.version == first.record.version == 1
        assert again.digest == first.digest
        assert s.functions.next_version("same") == 2  # no version 2 was stored
        assert await s.call("same") == 2  # the same warm worker: nothing was restarted
        records = s.audited("function.deploy")
        assert [r["outcome"] for r in records] == ["ok", "unchanged"]
        assert records[-1]["target"] == "same@1"

    run(settings, scenario)


def test_a_no_op_redeploy_still_needs_the_right_to_deploy(
    settings: Settings, tmp_path: Path
) -> None:
    """Another developer sending the same bundle is refused, not told "unchanged"."""
    bundle = archive(tmp_path / "owned", "owned", "def handler(e, c):\n    return 1\n")
    other = Principal("dev2", "dev2", Role.DEVELOPER)

    async def scenario(s: Service) -> None:
        await s.deployments.deploy(bundle, DEV, "r1")
        with pytest.raises(DeployForbidden):
            await s.deployments.deploy(bundle, other, "r2")

    run(settings, scenario)


def test_blocked_deploy_changes_nothing_and_is_audited(settings: Settings, tmp_path: Path) -> None:
    """A bundle the scan blocks is refused: nothing stored, kept, served or started."""
    bad = archive(tmp_path / "bad", "injected", INJECTION)

    async def scenario(s: Service) -> None:
        with pytest.raises(DeployBlocked) as blocked:
            await s.deployments.deploy(bad, DEV, "req-bad")
        assert any("os.system" in p for p in blocked.value.problems)
        assert s.deployments.registry.all() == []
        assert s.functions.current() == []
        assert s.pool.running() == 0
        rejected = [r for r in s.audited("function.deploy") if r["outcome"] == "rejected"]
        assert rejected[-1]["detail"]["error"] == "DeployBlocked"
        assert rejected[-1]["detail"]["request_id"] == "req-bad"

    run(settings, scenario)
    assert kept_bundles(settings) == []


def test_handler_that_fails_to_import_is_refused(settings: Settings, tmp_path: Path) -> None:
    """A handler whose import raises fails the deploy as a manifest problem, audited."""
    broken = archive(tmp_path / "broken", "broken", "raise ImportError('no such thing')\n")

    async def scenario(s: Service) -> None:
        with pytest.raises(ManifestError) as refused:
            await s.deployments.deploy(broken, DEV, "r")
        assert "no such thing" in refused.value.message
        assert s.functions.current() == [] and s.deployments.registry.get("broken") is None
        assert s.pool.running() == 0
        rejected = [r for r in s.audited("function.deploy") if r["outcome"] == "rejected"]
        assert rejected[-1]["detail"]["error"] == "FunctionFailed"

    run(settings, scenario)


def test_a_refused_manifest_is_audited_without_its_values(
    settings: Settings, tmp_path: Path
) -> None:
    """The deployer is told the validator's words, which quote the manifest; the audit log
    (read by others, kept forever) names only where the manifest is refused."""
    value = "sk_live_4f9a8b7c6d5e"
    cases = {
        # an unterminated string: a YAML error, whose text quotes the line
        "badyaml": f'name: badyaml\nhandler: main.handler\nenv:\n  TOKEN: "{value}\n',
        # a field's validator quotes the value
        "badfield": f"name: badfield\nhandler: {value}\n",
    }

    async def scenario(s: Service) -> None:
        for name, text in cases.items():
            root = tmp_path / name  # packed as sent: build_bundle would refuse it here
            root.mkdir()
            (root / "donjon.yaml").write_text(text)
            (root / "main.py").write_text("def handler(e, c):\n    return 1\n")
            bundle = pack(root)
            with pytest.raises(ManifestError) as refused:
                await s.deployments.deploy(bundle, DEV, f"req-{name}")
            assert value in refused.value.message  # the deployer's own answer keeps it
        rejected = [r for r in s.audited("function.deploy") if r["outcome"] == "rejected"]
        reasons = [r["detail"]["reason"] for r in rejected]
        assert len(reasons) == 2
        assert "not valid YAML (line" in reasons[0]
        assert reasons[1] == "donjon.yaml has 1 problem(s), at handler"
        assert not any(value in json.dumps(r) for r in rejected)

    run(settings, scenario)


def test_skipping_the_scan_needs_an_admin(settings: Settings, tmp_path: Path) -> None:
    """unsafe skip_scan by a developer is refused and audited; by an admin it deploys."""
    bundle = archive(tmp_path / "fn", "unscanned", INJECTION)

    async def scenario(s: Service) -> None:
        with pytest.raises(SkipScanRefused):
            await s.deployments.deploy(bundle, DEV, "r1", skip_scan=True)
        assert s.functions.current() == []
        rejected = [r for r in s.audited("function.deploy") if r["outcome"] == "rejected"]
        assert rejected[-1]["detail"]["error"] == "SkipScanRefused"
        done = await s.deployments.deploy(bundle, ADMIN, "r2", skip_scan=True)
        assert done.report is None
        ok = [r for r in s.audited("function.deploy") if r["outcome"] == "ok"]
        assert ok[-1]["detail"]["unsafe_skip_scan"] is True

    run(settings, scenario)


class CommitFailsStore(FunctionStore):
    """A store whose version write fails at its COMMIT, after its rows (the version's and
    the audit outbox's) were written: as SQLite's COMMIT fails on a full disk."""

    def add_version(self, *args: Any, **kwargs: Any) -> Any:
        def refuse(conn: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        event.listen(self._engine, "commit", refuse)
        try:
            return super().add_version(*args, **kwargs)
        finally:
            event.remove(self._engine, "commit", refuse)


def test_a_deploy_whose_commit_fails_is_audited_as_rejected(
    settings: Settings, tmp_path: Path
) -> None:
    """The version's rows and its record were written in one transaction whose COMMIT
    failed: nothing is stored, and the log says the deploy was rejected (not nothing, and
    not "ok")."""
    bundle = archive(tmp_path / "fn", "hello", "def handler(e, c):\n    return 1\n")

    async def scenario(s: Service) -> None:
        with pytest.raises(Exception, match="disk is full"):
            await s.deployments.deploy(bundle, DEV, "req-commit")
        assert s.functions.current() == []
        outcomes = [
            (r["outcome"], r["detail"].get("request_id")) for r in s.audited("function.deploy")
        ]
        assert outcomes == [("rejected", "req-commit")]

    run(settings, scenario, CommitFailsStore, outbox=True)


class MeetingStore(FunctionStore):
    """A store whose version writes wait (boundedly) for a second one to start."""

    arrived = 0
    both = threading.Event()

    def add_version(self, *args: Any, **kwargs: Any) -> Any:
        type(self).arrived += 1
        if type(self).arrived >= 2:
            type(self).both.set()
        type(self).both.wait(timeout=5)  # never met, if writes are one at a time
        return super().add_version(*args, **kwargs)


@pytest.mark.slow  # two deploys racing through real imports
def test_concurrent_deploys_cannot_both_take_a_route(settings: Settings, tmp_path: Path) -> None:
    """Two functions deployed at once claiming one route: exactly one gets it."""
    trig = "triggers:\n  - http: {path: /same, methods: [GET], auth: key}\n"
    a = archive(tmp_path / "a", "route-a", "def handler(e, c):\n    return 1\n", trig)
    b = archive(tmp_path / "b", "route-b", "def handler(e, c):\n    return 2\n", trig)

    async def scenario(s: Service) -> None:
        results = await asyncio.gather(
            s.deployments.deploy(a, DEV, "ra"),
            s.deployments.deploy(b, DEV, "rb"),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(refused) == 1 and isinstance(refused[0], ManifestError)
        assert len(s.deployments.registry.all()) == 1
        assert len(s.functions.current()) == 1
        route = s.deployments.registry.route("/same", "GET")
        assert route is not None and route[0].name == s.functions.current()[0].name

    run(settings, scenario, MeetingStore)


def test_a_restarted_service_serves_what_was_deployed(settings: Settings, tmp_path: Path) -> None:
    """What a deploy stored is what a restarting node loads and serves."""
    bundle = archive(tmp_path / "fn", "kept", "def handler(e, c):\n    return 'still here'\n")

    async def deploy(s: Service) -> None:
        await s.deployments.deploy(bundle, DEV, "r")

    async def call(s: Service) -> Any:
        return await s.call("kept")

    run(settings, deploy)
    assert run(settings, call) == "still here"


@pytest.mark.slow  # a fresh interpreter imports the lifecycle stack
def test_the_service_imports_nothing_of_http() -> None:
    """donjon.lifecycle is usable without starlette, uvicorn or the gateway (no HTTP server)."""
    code = (
        "import sys, donjon.lifecycle\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'uvicorn') or m.startswith('donjon.gateway'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == ""


SLOW_IMPORT = "import time\ntime.sleep(1.5)\ndef handler(e, c):\n    return {'v': %d}\n"


@pytest.mark.slow  # each import sleeps 1.5 s
def test_two_deploys_of_one_function_at_once_each_get_their_own_version(
    settings: Settings, tmp_path: Path
) -> None:
    """Concurrent deploys of one name never share a version or a sandbox: both go through,
    in turn, and the last one serves from the sandbox it started itself."""
    first = archive(tmp_path / "a", "twice", SLOW_IMPORT % 1)
    second = archive(tmp_path / "b", "twice", SLOW_IMPORT % 2)

    async def scenario(s: Service) -> tuple[list[int], Any, int]:
        a = asyncio.ensure_future(s.deployments.deploy(first, DEV, "req-a"))
        await asyncio.sleep(0.5)  # a is importing in its sandbox by now
        b = asyncio.ensure_future(s.deployments.deploy(second, DEV, "req-b"))
        done = await asyncio.gather(a, b)
        return sorted(d.record.version for d in done), await s.call("twice"), s.pool.running()

    versions, answer, running = run(settings, scenario)
    assert versions == [1, 2]
    assert answer in ({"v": 1}, {"v": 2}) and running == 1


@pytest.mark.slow  # v2's import sleeps 1.5 s
def test_removal_during_a_deploy_waits_for_it_and_leaves_nothing_running(
    settings: Settings, tmp_path: Path
) -> None:
    """A function removed while a new version starts stays removed, and no sandbox of it
    is left behind (none outlives the removal, none is orphaned)."""
    v1 = archive(tmp_path / "a", "gone", "def handler(e, c):\n    return 1\n")
    v2 = archive(tmp_path / "b", "gone", SLOW_IMPORT % 2)

    async def scenario(s: Service) -> tuple[bool, int, list[str]]:
        await s.deployments.deploy(v1, DEV, "req-1")
        deploying = asyncio.ensure_future(s.deployments.deploy(v2, DEV, "req-2"))
        await asyncio.sleep(0.5)  # v2 is importing in its sandbox by now
        await s.deployments.remove("gone", DEV, "req-rm")
        await deploying
        await asyncio.sleep(0)
        return (
            s.deployments.registry.get("gone") is None,
            s.pool.running(),
            [r.name for r in s.functions.current()],
        )

    removed, running, current = run(settings, scenario)
    assert removed and running == 0 and current == []
