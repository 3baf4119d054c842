"""The deployed functions, in memory: what the hot path reads instead of the store.

`Deployments` (deployments.py) is the only writer of a node's registry; the
gateway's routes, the scheduler and the rest only read it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donjon.bundle import BundleStore
from donjon.errors import Error
from donjon.manifest import (
    Isolation,
    Manifest,
    ManifestError,
    Rate,
    parse_manifest,
    parse_stored_manifest,
)
from donjon.manifest.event_triggers import S3Spec, WebhookSpec
from donjon.manifest.input_validator import input_validator
from donjon.manifest.model import HttpSpec
from donjon.sandbox import InstanceConfig
from donjon.store import FunctionRecord, FunctionStore
from donjon.store.version_mac import UNKNOWN_OWNER
from donjon.triggers import CronExpression

#: Whether a refusal may name a function (deployed) to the deployer: one it may read.
Shown = Callable[[str], bool]
#: What a refusal says instead of a function the deployer may not read.
_HIDDEN = "another owner's function"

__all__ = [
    "Deployed",
    "FunctionRegistry",
    "HookSpec",
    "SkippedRecord",
    "VersionUnauthenticated",
    "hook_paths",
    "instance_config",
    "load_registry",
    "make_deployed",
    "manifest_json",
    "stored_manifest",
]

_TMP_MB = 64

log = logging.getLogger("donjon")


@dataclass(frozen=True)
class Deployed:
    """One function's current version, ready to run."""

    record: FunctionRecord
    manifest: Manifest
    config: InstanceConfig
    validator: Any | None
    #: Parsed once here: the hot path reads no manifest text.
    rate: Rate | None
    schedules: tuple[CronExpression, ...]

    @property
    def name(self) -> str:
        return self.record.name

    def grant_holds(self, grantee: Deployed) -> bool:
        """Whether a grant this version's manifest makes to `grantee` by name (an invoke
        grant, a destination) still names it: `grantee`'s owner run began before this
        version was deployed, when the deploy checked the grant. A function of that name
        removed and deployed again since, perhaps by another owner, is not what was
        granted: it would get this function's events."""
        return grantee.name == self.name or grantee.record.since_at <= self.record.created_at


@dataclass(frozen=True)
class SkippedRecord:
    """A stored version the node could not load: skipped, logged and audited at start."""

    name: str
    version: int
    reason: str
    error: str


class VersionUnauthenticated(Error):
    """A stored version whose row lacks this node's MAC (store/version_mac.py): not served."""

    title = "Version not authenticated"

    def __init__(self, record: FunctionRecord) -> None:
        super().__init__(
            f"the stored row of {record.name} version {record.version}, or the one that makes"
            " it current and names its owner, does not carry this node's MAC: it was changed"
            " in the database, or written without its master key",
            hint="its owner (an admin, if the owner's row is the one changed) may deploy it"
            " again; or restore the database from a backup",
        )


def instance_config(manifest: Manifest, version: int, bundle: Path) -> InstanceConfig:
    """How the sandbox of `manifest` at `version` runs."""
    warm = manifest.isolation is Isolation.WARM
    return InstanceConfig(
        function=manifest.name,
        version=version,
        bundle=bundle,
        module=manifest.module,
        handler=manifest.function,
        warm=warm,
        memory_mb=manifest.memory_mb,
        tmp_mb=min(_TMP_MB, manifest.memory_mb),
        concurrency=manifest.limits.concurrency,
        timeout_s=manifest.timeout_s,
        log_level=manifest.log_level,
        policies=manifest.policies,
        egress=tuple(manifest.permissions.egress),
        egress_attempts=manifest.policies.egress_attempts,
    )


def make_deployed(record: FunctionRecord, bundle: Path) -> Deployed:
    manifest = parse_stored_manifest(record.manifest)  # on the event loop: JSON, not YAML
    config = instance_config(manifest, record.version, bundle)
    validator = (  # RE2 for its patterns: linear time on the hot path
        input_validator(manifest.input_schema) if manifest.input_schema is not None else None
    )
    schedules = tuple(CronExpression.parse(s) for s in manifest.schedules)
    return Deployed(record, manifest, config, validator, manifest.limits.parsed_rate, schedules)


#: What serves a path under /hooks: a signed webhook, or an S3-compatible store's push.
HookSpec = WebhookSpec | S3Spec


def hook_paths(manifest: Manifest) -> list[tuple[str, HookSpec]]:
    """The paths `manifest` serves under /hooks, with their triggers."""
    out: list[tuple[str, HookSpec]] = [(w.path, w) for w in manifest.webhooks]
    out += [(s.path, s) for s in manifest.storage_events if s.path is not None]
    return out


class FunctionRegistry:
    """Functions by name, http routes by (path, method), and /hooks paths."""

    def __init__(self) -> None:
        self._functions: dict[str, Deployed] = {}
        #: The functions by name, read only: what `get` answers, without its call (every
        #: invoke call's head and route look a name up here).
        self.by_name: Mapping[str, Deployed] = self._functions
        self._routes: dict[tuple[str, str], tuple[Deployed, HttpSpec]] = {}
        self._hooks: dict[str, tuple[Deployed, HookSpec]] = {}
        self._max_body = 0
        #: Each http path, and the function serving it.
        self._paths: dict[str, str] = {}
        #: The methods of each path's public http triggers.
        self._public: dict[str, tuple[str, ...]] = {}
        self._watchers: list[Callable[[], None]] = []
        #: Functions stored but not served (their record did not load), with the owner
        #: that stands for them until one is deployed again: never a name free to take.
        self._held: dict[str, str | None] = {}

    def watch(self, changed: Callable[[], None]) -> None:
        """Call `changed` after each put or remove (the event sources reconcile then)."""
        self._watchers.append(changed)

    def put(self, deployed: Deployed) -> None:
        self._functions[deployed.name] = deployed
        self._held.pop(deployed.name, None)
        self._rebuild_routes()
        self._notify()

    def remove(self, name: str) -> Deployed | None:
        gone = self._functions.pop(name, None)
        self._rebuild_routes()
        self._notify()
        return gone

    def _notify(self) -> None:
        for changed in self._watchers:
            changed()

    def hold(self, name: str, owner: str | None) -> None:
        """`name` is stored but not served (skipped at start): `owner` owns it still."""
        self._held[name] = owner

    def get(self, name: str) -> Deployed | None:
        return self._functions.get(name)

    def owner_of(self, name: str) -> str | None:
        """Who owns the function deployed as `name` (None: none is, or its owner is not
        kept): what the policy's owner-scoped decisions take. A function skipped at start
        keeps its owner (`hold`): deploying it again is its owner's, not anyone's."""
        current = self._functions.get(name)
        if current is None:
            return self._held.get(name)
        return current.record.owner or None

    def all(self) -> list[Deployed]:
        return [self._functions[n] for n in sorted(self._functions)]

    def schedules(self) -> list[tuple[str, CronExpression]]:
        """Every schedule trigger, as (function, expression)."""
        return [(d.name, cron) for d in self._functions.values() for cron in d.schedules]

    def max_body(self) -> int:
        """The largest `limits.body` of the functions deployed, in bytes (0 with none): the
        most any call's event may be, whichever function it names."""
        return self._max_body

    def route(self, path: str, method: str) -> tuple[Deployed, HttpSpec] | None:
        """The function and the trigger (auth mode, event format) for an http request."""
        return self._routes.get((path, method))

    def public_methods(self, path: str) -> tuple[str, ...]:
        """The methods of `path`'s public http triggers, in the manifest's order (none: the
        path has no public trigger, and may not say what it serves)."""
        return self._public.get(path, ())

    def hook(self, path: str) -> tuple[Deployed, HookSpec] | None:
        """The function and the trigger (webhook or S3 push) served at POST /hooks{path}."""
        return self._hooks.get(path)

    def route_conflicts(self, manifest: Manifest, shown: Shown | None = None) -> list[str]:
        """Paths of `manifest` (http, and under /hooks) another function already serves.

        An http path is one function's for every method and every path below it: a
        browser sends the cookies of `/fn/a` to `/fn/a` and `/fn/a/...` whatever the
        method, and a function's event carries them, so a function beside, below or
        above another would be handed its users' cookies (or could set cookies for it).
        With `shown`, a function it says no to (another tenant's) is not named, nor
        its paths: what the deployer sent is.
        """
        out = []
        for path in sorted({spec.path for spec in manifest.http_triggers}):
            for other, owner in self._paths.items():
                if owner != manifest.name and _shares_cookies(path, other):
                    named = shown is None or shown(owner)
                    out.append(_shared_path(path, other, owner if named else None))
        for path, _ in hook_paths(manifest):
            hooked = self._hooks.get(path)
            if hooked is not None and hooked[0].name != manifest.name:
                out.append(f"POST /hooks{path} belongs to {_name(hooked[0].name, shown)}")
        return out

    def shared_hook_secrets(self, manifest: Manifest, shown: Shown | None = None) -> list[str]:
        """Secrets a path of `manifest` under /hooks would share with another path (its
        own, or another function's). A webhook's signature covers its body, not its URL,
        and a storage push's bearer token neither: a delivery made for one path is taken
        at every path that shares its secret. `shown`: as for `route_conflicts`."""
        mine = [(path, spec.secret) for path, spec in hook_paths(manifest) if spec.secret]
        out = []
        for i, (path, secret) in enumerate(mine):
            for other, same in mine[i + 1 :]:
                if same == secret and other != path:
                    out.append(f"secret {secret} authenticates both /hooks{path} and /hooks{other}")
            for other, (deployed, spec) in self._hooks.items():
                if deployed.name != manifest.name and spec.secret == secret and other != path:
                    where = (
                        f"/hooks{other} ({deployed.name})"
                        if shown is None or shown(deployed.name)
                        else f"a path of {_HIDDEN}"
                    )
                    out.append(f"secret {secret} already authenticates {where}")
        return out

    def _rebuild_routes(self) -> None:
        routes: dict[tuple[str, str], tuple[Deployed, HttpSpec]] = {}
        hooks: dict[str, tuple[Deployed, HookSpec]] = {}
        paths: dict[str, str] = {}
        public: dict[str, tuple[str, ...]] = {}
        for deployed in self._functions.values():
            for spec in deployed.manifest.http_triggers:
                paths[spec.path] = deployed.name
                if spec.auth == "public":
                    public[spec.path] = (*public.get(spec.path, ()), *spec.methods)
                for method in spec.methods:
                    routes[(spec.path, method)] = (deployed, spec)
            for path, hook in hook_paths(deployed.manifest):
                hooks[path] = (deployed, hook)
        self._routes = routes
        self._hooks = hooks
        self._max_body = max(
            (d.manifest.limits.body_bytes for d in self._functions.values()), default=0
        )
        self._paths = paths
        self._public = public


def _shares_cookies(path: str, other: str) -> bool:
    """Whether a browser sends cookies of one of two http paths to the other (RFC 6265's
    path-match: the same path, or one below the other by whole segments)."""
    if path == other:
        return True
    short, long = sorted((path, other), key=len)
    return long.startswith(short.rstrip("/") + "/")


def _shared_path(path: str, other: str, owner: str | None) -> str:
    """A conflict of `path` with `other`, a path of function `owner` (None: not named)."""
    if path == other:
        whose = owner or _HIDDEN
        return f"http path {path} belongs to {whose} (every method of a path is one function's)"
    where = "below" if len(path) > len(other) else "above"
    if owner is None:
        return f"http path {path} is {where} a path of {_HIDDEN}"
    return f"http path {path} is {where} {other}, a path of {owner}"


def _name(function: str, shown: Shown | None) -> str:
    return function if shown is None or shown(function) else _HIDDEN


def manifest_json(manifest: Manifest) -> str:
    return json.dumps(manifest.model_dump(mode="json", exclude_none=True), sort_keys=True)


def stored_manifest(manifest: Manifest) -> str:
    """The exact text `manifest` is stored as, checked to load back as `manifest`.

    A node loads every current version at start (`parse_stored_manifest`), so
    what it could not load must never be stored: the stored form is JSON, which
    non-ASCII text (escaped) can make far larger than the donjon.yaml it came
    from. The check here is the stricter `parse_manifest` (64 KiB at most).
    `ManifestError` when it would not load back.
    """
    text = manifest_json(manifest)
    hint = (
        "the manifest is stored as JSON, where YAML aliases are expanded and non-ASCII "
        "text is escaped; make it smaller"
    )
    try:
        again = parse_manifest(text, source="donjon.yaml stored as JSON")
    except ManifestError as e:
        raise ManifestError(e.message, problems=e.problems or [e.message], hint=hint) from e
    if again != manifest:
        raise ManifestError(
            "donjon.yaml does not load back the same once stored as JSON",
            problems=["(root): changes when stored as JSON"],
            hint=hint,
        )
    return text


def load_registry(
    functions: FunctionStore, bundles: BundleStore
) -> tuple[FunctionRegistry, list[SkippedRecord]]:
    """The current version of every stored function, ready to serve, as a node starts.

    One bad record never stops a node from starting: it is noted in the skipped
    list (the node audits it) and that function is simply not served.
    """
    registry = FunctionRegistry()
    skipped: list[SkippedRecord] = []
    for record in functions.current():
        try:
            if not functions.authentic(record):
                raise VersionUnauthenticated(record)
            deployed = make_deployed(record, bundles.path(record.digest))
        except Exception as e:  # whatever is wrong with it, skip it
            reason = (e.message if isinstance(e, Error) else str(e))[:500]
            log.warning(
                "function %s@%s is not served: its stored record does not load (%s)",
                record.name,
                record.version,
                reason.splitlines()[0] if reason else "",
            )
            skipped.append(SkippedRecord(record.name, record.version, reason, type(e).__name__))
            trusted = functions.pointer_authentic(record)
            registry.hold(record.name, (record.owner or None) if trusted else UNKNOWN_OWNER)
            continue
        registry.put(deployed)
    return registry, skipped
