"""init, serve, up, doctor."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shlex
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import cast

import click
import httpx

from donjon._subprocess import start
from donjon.cli.client import ApiClient
from donjon.cli.output import OutputFormat, echo_text, output_option
from donjon.config import DEFAULT_PORT, Settings, load_settings
from donjon.errors import Error

__all__ = ["doctor", "init", "serve", "up"]


@click.command()
@output_option
def init(output: OutputFormat) -> None:
    """Create the data dir, master key, TLS certificate, database and first admin key.

    --output json prints {"admin_key", "url", "data_dir"}."""
    from donjon.bootstrap import initialize

    settings = load_settings()
    result = initialize(settings)
    if output is OutputFormat.JSON:
        click.echo(
            json.dumps(
                {
                    "admin_key": result.admin_key,
                    "url": settings.url,
                    "data_dir": str(settings.data_dir),
                }
            )
        )
        return
    if not result.created:
        click.echo(f"{settings.data_dir} is already initialised; nothing changed")
        return
    click.echo(f"initialised {settings.data_dir}")
    click.echo("admin API key (shown once, store it now):")
    click.echo(f"  export DONJON_API_KEY={result.admin_key}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--unsafe-http", is_flag=True, help="Serve plain HTTP (never on a network).")
@click.option(
    "--unsafe-fewer-controls",
    is_flag=True,
    help="Serve even with required controls missing (warned and audited at every start).",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    help="Log lines on stderr: JSON, or a console view (auto: console on a terminal).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    unsafe_http: bool,
    unsafe_fewer_controls: bool,
    log_format: str,
    log_level: str,
) -> None:
    """Serve the gateway (HTTPS) and run functions in sandboxes."""
    from donjon.gateway.heap import pause_collector

    pause_collector()  # until the node has started (gateway/heap.py)
    from donjon.gateway.server import serve as run_server
    from donjon.obs import configure_logging

    configure_logging(json={"auto": None, "json": True}.get(log_format, False), level=log_level)
    log = logging.getLogger("donjon")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    settings = load_settings()
    scheme = "http" if unsafe_http else "https"
    stopped_by = run_server(
        settings,
        host,
        port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        unsafe_http=unsafe_http,
        unsafe_fewer_controls=unsafe_fewer_controls,
        # Once the node has started and listens (gateway/server.py, `serve`).
        announce=lambda: log.info("donjon serving on %s://%s:%d", scheme, host, port),
    )
    if stopped_by is not None:  # a log line like every other line `serve` writes
        log.info("donjon stopped (%s)", signal.Signals(stopped_by).name)


@click.command()
@output_option
@click.option(
    "--record-baseline",
    is_flag=True,
    help="Record the controls in force now as the ones `donjon serve` requires here.",
)
def doctor(output: OutputFormat, record_baseline: bool) -> None:
    """List every control in force on this host, and each missing one with its fix.

    Exit 0 when every required control is in force (those Donjon never runs
    without, DONJON_REQUIRE_CONTROLS, the node's recorded baseline), 1 when one
    is missing. --output json prints {"ok", "controls": [...], ...}."""
    from donjon.controls import load_baseline, survey
    from donjon.controls import record_baseline as record
    from donjon.controls.baseline import with_required
    from donjon.controls.space import disk_space
    from donjon.sandbox import detect_resource_control
    from donjon.sandbox.callgroups import describe_call_isolation

    settings = load_settings()
    controls = survey(settings)
    if record_baseline:
        from donjon.datadir import check_data_dir

        if not settings.initialised:
            raise Error(f"{settings.data_dir} is not initialised", hint="run `donjon init`")
        check_data_dir(settings.data_dir)  # written into: this user's alone (datadir.py)
        baseline: frozenset[str] | None = record(settings.data_dir, controls)
    else:
        baseline = load_baseline(settings.data_dir)
    marked = with_required(controls, baseline, settings.require_controls)
    missing = [c.name for c in marked if c.required and not c.present]
    resources = detect_resource_control()
    procs, memory = describe_call_isolation(resources)
    limits = _limits_backend(settings)
    space = disk_space(settings.data_dir)
    if output is OutputFormat.JSON:
        click.echo(
            json.dumps(
                {
                    "ok": not missing,
                    "missing_required": missing,
                    "resource_control": resources.mode.value,
                    "baseline": sorted(baseline) if baseline is not None else None,
                    "controls": [c.as_json() for c in marked],
                    "limits": limits,
                    "database": settings.database_shown,
                    "data_dir_space": None if space is None else space.as_json(),
                }
            )
        )
    else:
        width = max(len(c.name) for c in marked) + 1
        for c in marked:
            state = "ok" if c.present else ("MISSING" if c.required else "absent")
            line = f"{c.name:<{width}} {state:<7} {c.detail}"
            if not c.present and c.fix:
                line += f" (fix: {c.fix})"
            click.echo(line)
        click.echo(f"{'resource control:':<{width}} {resources.describe()}")
        click.echo(f"{'cpu limit:':<{width}} {resources.describe_cpu()}")
        click.echo(f"{'call isolation:':<{width}} {procs}")
        click.echo(f"{'call memory:':<{width}} {memory}")
        click.echo("\n".join(_limits_lines(limits, width)))
        click.echo(f"{'database:':<{width}} {settings.database_shown}")
        if space is not None:
            click.echo(f"{'data dir space:':<{width}} {space.describe()}")
        if baseline is None:
            click.echo("baseline: none recorded yet (the first `donjon serve` records it)")
        else:
            click.echo(f"baseline: {len(baseline)} controls required by this node's record")
        if missing:
            click.echo(f"required control(s) missing: {', '.join(missing)}", err=True)
    if missing:
        raise SystemExit(1)


def _limits_backend(settings: Settings) -> dict[str, object]:
    """Which backend holds the limits (memory, or the shared Redis) and whether it answers;
    informational: a Redis that does not answer is shown, not a missing control."""
    import asyncio

    from donjon.ratelimit.backends import describe_backend

    backend, answers, detail, risks = asyncio.run(describe_backend(settings))
    return {
        "backend": backend,
        "answers": answers,
        "url": settings.redis_url_shown or None,
        "detail": detail,
        "risks": risks,
    }


def _limits_lines(limits: dict[str, object], width: int) -> list[str]:
    """The limits backend as doctor's text shows it: one line, then one per risk."""
    answers = {None: "", True: " (answers)", False: " (NOT ANSWERING)"}[
        cast("bool | None", limits["answers"])
    ]
    lines = [f"{'limits backend:':<{width}} {limits['backend']}{answers}: {limits['detail']}"]
    lines += [f"{'limits risk:':<{width}} {risk}" for risk in cast("list[str]", limits["risks"])]
    return lines


def _bootstrap_key(settings: Settings) -> tuple[str, str]:
    """A developer key minted from local access to the data dir, for `up` to deploy with.

    Each `up` reissues the same key id (a fresh secret; the last `up` revoked
    it), so the examples stay owned by one principal and `up` may redeploy them.
    Audited like every key change: no node runs yet, so its record is committed with
    the change in the audit outbox (store/audit_outbox.py, owner `offline`), and the
    node `up` starts appends it before it serves.
    """
    from donjon.identity import Role, hash_key, new_api_key, new_secret
    from donjon.store import KeyStore, connect, create_schema
    from donjon.store.audit_outbox import OFFLINE, PENDING, Pending
    from donjon.vault import AUDIT_OUTBOX_PURPOSE, KEY_HASH_PURPOSE, MasterKey

    master = MasterKey.load(settings.master_key_path)
    outbox_key = master.derive(AUDIT_OUTBOX_PURPOSE)  # the row's MAC (store/audit_outbox.py)
    engine = connect(settings.database_url)
    try:
        create_schema(engine)  # a data dir from an older version gains its new columns
        store = KeyStore(engine)
        earlier = [k for k in store.all() if k.name == "donjon-up" and k.role == Role.DEVELOPER]
        key_id = earlier[-1].id if earlier else ""
        key = (
            None
            if earlier
            else new_api_key(master.derive(KEY_HASH_PURPOSE), "donjon-up", Role.DEVELOPER)
        )
        if key is not None:
            key_id = key.record.id
        event = {
            "actor": "system",
            "action": "key.reissue" if key is None else "key.create",
            "target": f"key:{key_id}",
            "outcome": "ok",
            "detail": {"name": "donjon-up", "role": Role.DEVELOPER, "via": "up"},
        }
        pending = Pending(secrets.token_hex(16), event, owner=OFFLINE, mac_key=outbox_key)
        token = PENDING.set(pending)
        try:
            if key is None:
                secret = new_secret(key_id)
                store.reissue(key_id, hash_key(master.derive(KEY_HASH_PURPOSE), secret))
            else:
                store.add(key.record)
                secret = key.secret
        finally:
            PENDING.reset(token)
    finally:
        engine.dispose()
    return key_id, secret


def _wait_healthy(settings: Settings, proc: subprocess.Popen[bytes], timeout: float) -> None:
    verify: ssl.SSLContext | bool = False
    if settings.url.startswith("https"):
        verify = ssl.create_default_context(cafile=str(settings.tls_cert_path))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Error(f"donjon serve exited with code {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{settings.url}/healthz", verify=verify, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise Error(f"donjon serve did not answer on {settings.url} within {timeout:.0f}s")


@click.command()
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option(
    "--examples",
    "examples_dir",
    default="examples",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Deploy every bundle in this directory.",
)
def up(port: int, examples_dir: Path) -> None:
    """Init if needed, serve, deploy the examples and print how to call them."""
    from donjon.bootstrap import initialize
    from donjon.gateway.server import check_port_free, node_held

    settings = load_settings()
    # Before anything is made: a busy port leaves no data dir, key or process behind.
    check_port_free("127.0.0.1", port)
    # SIGTERM stops `up` as Ctrl-C does: the server is told to stop and waited for.
    signal.signal(signal.SIGTERM, _interrupt)
    env = dict(os.environ, DONJON_DATA_DIR=str(settings.data_dir))
    url = f"https://127.0.0.1:{port}"
    env["DONJON_URL"] = url
    key_id = ""
    try:
        # Not cut in half by a signal: an admin key is made and printed, or neither. Held
        # as its node will hold it: an `up` on a data dir (or database) another node
        # serves is refused before it mints a key there; its `serve` takes them over.
        with _signals_held(), node_held(settings):
            created = initialize(settings)
            if created.admin_key:
                click.echo(f"initialised {settings.data_dir}")
                click.echo("admin API key (shown once, store it now):")
                click.echo(f"  export DONJON_API_KEY={created.admin_key}")
            settings = load_settings(env)
            # Minted before the server starts, so the server loads it; revoked once deployed.
            key_id, secret = _bootstrap_key(settings)
        # Started with signals deliverable: a child inherits the blocked set.
        proc = start(
            [sys.executable, "-m", "donjon.cli", "serve", "--port", str(port)],
            env=env,
            pipes=False,
            die_with_parent=True,
        )
    except KeyboardInterrupt:
        if key_id:
            _revoke_quietly(settings, key_id)
        click.echo("donjon stopped", err=True)
        return
    revoked: list[bool] = []  # set once the node revoked the key
    try:
        _wait_healthy(settings, proc, 30)
        bundles = _deploy_examples(settings, examples_dir, key_id, secret, revoked)
        _print_tour(url, settings, bundles, key_shown=bool(created.admin_key))
        click.echo("serving; Ctrl-C to stop")
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        _stop_server(proc, settings.shutdown_grace_s)
        if not revoked:  # the node never answered, or the revocation failed: offline
            _revoke_quietly(settings, key_id)
    click.echo("donjon stopped", err=True)


def _deploy_examples(
    settings: Settings, examples_dir: Path, key_id: str, secret: str, revoked: list[bool]
) -> list[Path]:
    """Deploy every bundle in `examples_dir` with `up`'s key, then revoke the key through
    the node (`revoked` gets True once it did); the bundles."""
    from donjon.cli.functions import deploy_dir

    client = ApiClient(settings, api_key=secret)
    try:
        bundles = (
            sorted(p for p in examples_dir.iterdir() if (p / "donjon.yaml").is_file())
            if examples_dir.is_dir()
            else []
        )
        for bundle in bundles:
            result = deploy_dir(client, bundle)
            done = "unchanged" if result.get("unchanged") else "deployed"  # as `donjon deploy`
            echo_text(f"{done} {result['name']} v{result['version']}")
    finally:
        try:
            client.request("DELETE", f"/v1/keys/{key_id}")
            revoked.append(True)
        finally:
            client.close()
    return bundles


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (blocked, not lost) until the block ends."""
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)


def _stop_server(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """Tell the server to stop (SIGTERM), wait out its grace period, then kill it.

    SIGTERM, not SIGINT: after a Ctrl-C the server already has a SIGINT, and a
    second one would make it skip its orderly shutdown. A second Ctrl-C here
    kills it at once.
    """
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s + 30)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        proc.kill()
    with _signals_held():
        proc.wait()


def _revoke_quietly(settings: Settings, key_id: str) -> None:
    """Revoke `up`'s key in the data dir, its node stopped or never started (Ctrl-C before
    it, a node that did not come up, a revocation through the API that failed): recorded
    through the audit outbox, as it was made (`_bootstrap_key`)."""
    from donjon.store import KeyStore, connect
    from donjon.store.audit_outbox import OFFLINE, PENDING, Pending
    from donjon.vault import AUDIT_OUTBOX_PURPOSE, MasterKey

    event = {
        "actor": "system",
        "action": "key.revoke",
        "target": f"key:{key_id}",
        "outcome": "ok",
        "detail": {"name": "donjon-up", "via": "up"},
    }
    outbox_key = MasterKey.load(settings.master_key_path).derive(AUDIT_OUTBOX_PURPOSE)
    engine = connect(settings.database_url)
    token = PENDING.set(Pending(secrets.token_hex(16), event, owner=OFFLINE, mac_key=outbox_key))
    try:
        KeyStore(engine).revoke(key_id)
    finally:
        PENDING.reset(token)
        engine.dispose()


def _sample_event(bundle: Path) -> str:
    """The example's `event.json` (a sample event kept beside it), compact; else `{}`."""
    sample = bundle / "event.json"
    if not sample.is_file():
        return "{}"
    try:
        return json.dumps(json.loads(sample.read_text()), separators=(", ", ": "))
    except (OSError, ValueError):
        return "{}"


def _print_tour(url: str, settings: Settings, bundles: list[Path], key_shown: bool) -> None:
    """Shell lines that work as printed, in order, from another shell (tests/cli/test_up_tour.py).

    After the `export DONJON_API_KEY=...` line `up` printed (or with an older
    admin key exported), each line runs as shown: functions with an http
    trigger are called with curl, the others with `donjon invoke` and their
    sample event.
    """
    click.echo(f"\nDonjon is up at {url}. Try, from another shell:")
    exports = [f"DONJON_URL={url}"]
    if os.environ.get("DONJON_DATA_DIR"):
        exports.append(f"DONJON_DATA_DIR={shlex.quote(str(settings.data_dir))}")
    click.echo(f"  export {' '.join(exports)}")
    if not (key_shown or os.environ.get("DONJON_API_KEY")):
        click.echo("  # and DONJON_API_KEY: the admin key printed by your first `donjon up`")
    cert = shlex.quote(str(settings.tls_cert_path))
    from donjon.manifest import load_manifest
    from donjon.manifest.model import HttpTrigger

    for bundle in bundles:
        manifest = load_manifest(bundle)
        http = [t.http for t in manifest.triggers if isinstance(t, HttpTrigger)]
        if not http:
            sample = shlex.quote(_sample_event(bundle))
            click.echo(f"  donjon invoke {manifest.name} --data {sample}")
        for h in http:
            auth = "" if h.auth == "public" else ' -H "Authorization: Bearer $DONJON_API_KEY"'
            click.echo(f"  curl --cacert {cert} -X {h.methods[0]}{auth} {url}/fn{h.path}")
