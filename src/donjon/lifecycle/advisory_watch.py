"""The advisory watch: deployed versions re-checked when the advisory data changes.

Every DONJON_ADVISORY_WATCH_S the node looks at its advisory data (advisory_source.py):
after `donjon scan --update-db`, a new DONJON_ADVISORIES export, or a fetch of
DONJON_ADVISORY_SOURCE_URL, its content digest differs from the one last checked
against (kept in the database), and every current version is checked again
(components.py, advisory_diff.py). Each finding that appears is opened in the
database, unreported; every pass then claims the unreported ones (the outbox of
store/vulnerabilities.py): the node whose claim wins writes its `advisory.vulnerable`
record, which the monitor's `advisory_watch` rule raises as a `dependency.vulnerable`
alert, and gives the claim back if the record fails, so a later pass (of any node, or
after a restart) retries it: no finding stays open without its alert. A
finding the data no longer supports is cleared (`advisory.cleared`). The deploy
scan's helper is then restarted on the new data.

A version the watch has never checked, while the data is what the deploy scan read,
is recorded quietly (`advisory.known`): its deployer was shown those findings. Under
any other data its findings are alerted like the rest. The loop runs on the node's
event loop; every file and database access runs on a thread, off the gateway's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from donjon.audit import AuditEvent, AuditLog
from donjon.bundle import BundleStore
from donjon.config import Settings
from donjon.errors import Error
from donjon.lifecycle.advisory_diff import diff, match
from donjon.lifecycle.advisory_source import content_digest, refresh, refresh_due, stat_identity
from donjon.lifecycle.components import Component, components_of, sbom_components
from donjon.scan import IsolatedScanner
from donjon.scan.deps.advisories import AdvisoryDB
from donjon.scan.deps.advisory_cache import cache_dir_for
from donjon.scan.deps.osv_update import DOWNLOAD_DEADLINE_S
from donjon.store import FunctionRecord, FunctionStore, VersionFinding, VulnerabilityStore
from donjon.store.vulnerabilities import fits
from donjon.supply import SupplyChain, SupplyError

__all__ = ["ACTOR", "AdvisoryWatch", "WatchPass", "restart_scanner"]

ACTOR = "system:advisory-watch"
#: After a failed fetch, the next one waits at least this long (or the refresh period).
_RETRY_S = 900.0

log = logging.getLogger("donjon")


@dataclass(frozen=True)
class WatchPass:
    """What one look at the data did."""

    digest: str
    changed: bool
    checked: int = 0
    new: int = 0
    cleared: int = 0


class AdvisoryWatch:
    """Re-checks the current versions when the advisory data changes."""

    def __init__(
        self,
        settings: Settings,
        functions: FunctionStore,
        bundles: BundleStore,
        store: VulnerabilityStore,
        audit: AuditLog,
        *,
        reload_scanner: Callable[[Path | None], None] | None = None,
        supply: SupplyChain | None = None,
    ) -> None:
        self._settings = settings
        self._functions = functions
        self._bundles = bundles
        self._store = store
        self._audit = audit
        self._reload_scanner = reload_scanner
        #: Each version's stored SBOM, where its components are read (None: the bundle's).
        self._supply = supply
        self._identity: str | None = None
        #: The digest last checked against (the database's), and the deploy scan's.
        self._digest: str | None = None
        self._scanner_digest = ""
        self._seen: set[tuple[str, int]] = set()
        self._next_fetch = 0.0
        self._prepared = False
        self._task: asyncio.Task[None] | None = None
        #: A fetch's limit in all (each read has its own); tests make it short.
        self.fetch_deadline_s = DOWNLOAD_DEADLINE_S

    def start(self, reload_scanner: Callable[[Path | None], None] | None = None) -> None:
        """Look now, then every period, on the running loop. `reload_scanner` restarts
        the deploy scan's helper on new data (it must have loaded the data in force now)."""
        if reload_scanner is not None:
            self._reload_scanner = reload_scanner
        self._task = asyncio.get_running_loop().create_task(self._run(), name="advisory-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def findings_of(self, current: Mapping[str, int]) -> dict[str, list[VersionFinding]]:
        """The open findings of each function's version named in `current`."""
        found = await asyncio.to_thread(self._store.open_findings, current)
        out: dict[str, list[VersionFinding]] = {}
        for f in found:
            if current.get(f.function) == f.version:
                out.setdefault(f.function, []).append(f)
        return out

    async def _run(self) -> None:
        await self._safely(self.prepare)
        while True:
            await self._safely(self.fetch)
            await self._safely(self.check)
            await asyncio.sleep(self._settings.advisory_watch.period_s)

    async def prepare(self) -> None:
        """Note the data the deploy scan loaded, and the digest last checked against."""
        path = self._settings.advisories_path
        self._scanner_digest = await asyncio.to_thread(_digest_of, path)
        self._digest = await asyncio.to_thread(self._store.last_digest)
        self._prepared = True

    async def _safely(self, step: Callable[[], Awaitable[object]]) -> None:
        try:
            await step()
        except Exception:  # a busy database, a bad file: the next period tries again
            log.exception("advisory watch: a pass failed")

    async def fetch(self) -> bool:
        """Fetch DONJON_ADVISORY_SOURCE_URL when due; True if a new export was saved."""
        url = self._settings.advisory_watch.source_url
        period = self._settings.advisory_watch.refresh_s
        data_dir = self._settings.data_dir
        if url is None or time.time() < self._next_fetch:
            return False
        if not await asyncio.to_thread(refresh_due, data_dir, period):
            return False
        try:
            saved = await asyncio.to_thread(refresh, data_dir, url, self.fetch_deadline_s)
        except (Error, httpx.InvalidURL, OSError) as e:
            error = e.message if isinstance(e, Error) else str(e)
            self._next_fetch = time.time() + min(period, _RETRY_S)
            log.warning("advisory watch: fetching %s failed: %s", url, error)
            await self._record(
                "advisory.refresh", "advisories", "failed", {"url": url, "error": error}
            )
            return False
        await self._record(
            "advisory.refresh", "advisories", "ok", {"url": url, "saved": saved.name}
        )
        return True

    async def check(self) -> WatchPass:
        """Look at the data; if it changed, or versions are new, check them; then
        write the records of the findings nobody has reported yet."""
        try:
            return await self._check()
        finally:
            await self._report()

    async def _report(self) -> int:
        """Claim each unreported open finding and write its record; a failed record
        gives its claim back (retried by a later pass). The number written."""
        data = {"data": (self._digest or "")[:16]}
        written = 0
        for f in await asyncio.to_thread(self._store.unreported):
            if not await asyncio.to_thread(self._store.claim_report, f):
                continue  # another node claimed it
            try:
                await self._record(
                    "advisory.vulnerable", _target(f), "warning", {**f.detail(), **data}
                )
            except Exception:  # the audit writer down: a later pass retries
                log.exception("advisory watch: the record of %s failed", _target(f))
                await asyncio.to_thread(self._store.release_report, f)
                continue
            written += 1
        return written

    async def _check(self) -> WatchPass:
        if not self._prepared:  # what was checked before must be known first
            await self.prepare()
        path = self._settings.advisories_path
        identity = await asyncio.to_thread(stat_identity, path)
        records = {(r.name, r.version): r for r in await asyncio.to_thread(self._functions.current)}
        if identity == self._identity and set(records) <= self._seen:
            return WatchPass(self._digest or "", changed=False)
        digest = self._digest or ""
        if identity != self._identity:
            digest = await asyncio.to_thread(_digest_of, path)
        if path is None or not digest:
            self._identity = identity
            return WatchPass("", changed=False)  # no data: nothing to check against
        changed = self._digest is not None and digest != self._digest
        unseen = set(records) - await asyncio.to_thread(self._store.checked, records)
        chosen = records if changed else {k: records[k] for k in unseen}
        quiet = not changed and digest == self._scanner_digest
        result = WatchPass(digest, changed)
        if chosen:
            cache = cache_dir_for(self._settings.data_dir)
            try:
                db = await asyncio.to_thread(AdvisoryDB.load, path, cache_dir=cache)
            except Error as e:  # looked at again once the data changes again
                self._identity = identity
                log.warning("advisory watch: %s does not load: %s", path, e.message)
                await self._record("advisory.data", "advisories", "failed", {"error": e.message})
                return WatchPass(digest, changed)
            result = await self._check_versions(db, digest, chosen, changed, quiet)
        await asyncio.to_thread(self._store.mark_checked, chosen)
        await asyncio.to_thread(self._store.save_digest, digest)
        self._seen = set(records)
        self._digest = digest
        self._identity = identity
        if digest != self._scanner_digest and self._reload_scanner is not None:
            await asyncio.to_thread(self._reload_scanner, path)
            self._scanner_digest = digest
        return result

    async def _check_versions(
        self,
        db: AdvisoryDB,
        digest: str,
        versions: dict[tuple[str, int], FunctionRecord],
        changed: bool,
        quiet: bool,
    ) -> WatchPass:
        """Check `versions` against `db`: open and clear findings, audit each."""
        parts = await asyncio.to_thread(self._components, versions)
        found = await asyncio.to_thread(match, db, parts)
        names = {name for name, _ in versions}
        known = [
            f
            for f in await asyncio.to_thread(self._store.open_findings, names)
            if (f.function, f.version) in versions
        ]
        change = diff(known, found)
        opened = [f for f in change.new if await asyncio.to_thread(self._open, f, quiet)]
        cleared = [
            f for f in change.cleared if await asyncio.to_thread(self._store.clear_finding, f)
        ]
        data = {"data": digest[:16]}
        if quiet:
            for key in sorted({(f.function, f.version) for f in opened}):
                mine = [f.detail() for f in opened if (f.function, f.version) == key]
                await self._record(
                    "advisory.known", f"{key[0]}@{key[1]}", "ok", {"findings": mine, **data}
                )
        for f in cleared:
            await self._record("advisory.cleared", _target(f), "ok", {**f.detail(), **data})
        if opened or cleared:
            log.info(
                "advisory watch: %d finding(s) opened, %d cleared over %d version(s)",
                len(opened),
                len(cleared),
                len(versions),
            )
        if changed:
            await self._record(
                "advisory.data",
                "advisories",
                "ok",
                {"versions": len(versions), "new": len(opened), "cleared": len(cleared), **data},
            )
        return WatchPass(digest, changed, len(versions), len(opened), len(cleared))

    def _open(self, finding: VersionFinding, quiet: bool) -> bool:
        """Open one finding (its record waits in the outbox unless `quiet`); one that
        does not fit the table, or fails, is logged and leaves the others alone."""
        if not fits(finding):
            log.warning(
                "advisory watch: %s %s %s is longer than the table keeps: skipped",
                _target(finding),
                finding.package[:200],
                finding.advisory[:128],
            )
            return False
        try:
            return self._store.open_finding(finding, reported=quiet)
        except Exception:  # a database error on this row: the next change retries it
            log.exception(
                "advisory watch: opening %s %s failed", _target(finding), finding.advisory[:128]
            )
            return False

    def _components(
        self, versions: dict[tuple[str, int], FunctionRecord]
    ) -> dict[tuple[str, int], list[Component]]:
        return {key: self._components_of(record) for key, record in versions.items()}

    def _components_of(self, record: FunctionRecord) -> list[Component]:
        """From the version's SBOM; from its bundle if no signed statement vouches for the
        SBOM, or it cannot be read (one damaged SBOM does not stop the other checks)."""
        if self._supply is not None:
            try:
                found = sbom_components(self._supply, record)
                if found is not None:
                    return found
            except SupplyError as e:
                log.warning(
                    "advisory watch: %s@%s: SBOM unreadable (%s); reading its bundle",
                    record.name,
                    record.version,
                    e.message,
                )
        return components_of(self._bundles, record)

    async def _record(
        self, action: str, target: str, outcome: str, detail: dict[str, object]
    ) -> None:
        await self._audit.record(AuditEvent(ACTOR, action, target, outcome, detail))


def restart_scanner(scanner: IsolatedScanner, path: Path | None) -> None:
    """Restart the deploy scan's helper on the advisory data at `path`."""
    scanner.advisories = path
    scanner.close()
    scanner.start()


def _target(finding: VersionFinding) -> str:
    return f"{finding.function}@{finding.version}"


def _digest_of(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return content_digest(path)
    except OSError:
        return ""
