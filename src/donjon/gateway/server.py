"""Serving the gateway with uvicorn: HTTPS unless told --unsafe-http."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from donjon.config import Settings
from donjon.gateway.app import create_app
from donjon.gateway.capacity import InFlightLimit
from donjon.gateway.connections import protocol_for
from donjon.gateway.node import open_node
from donjon.sandbox import SandboxHost, check_sandbox

__all__ = ["serve"]

log = logging.getLogger("donjon")


class _TlsDeadlines:
    """An event loop whose TLS servers bound the handshake and the closing exchange.

    Left to the loop's defaults (60 s and 30 s), a client that opens TCP and never
    finishes the handshake, or never answers close_notify, holds its socket that long.
    """

    tls_timeout_s: float = 10.0

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.tls_timeout_s)
            kwargs.setdefault("ssl_shutdown_timeout", self.tls_timeout_s)
        # A mixin: mypy cannot see the loop class it is mixed into.
        server: asyncio.Server = await super().create_server(*args, **kwargs)  # type: ignore[misc]
        return server


def _loop_factory(tls_timeout_s: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop (as uvicorn would pick) or asyncio's loop, with the TLS deadlines."""
    base: type[asyncio.AbstractEventLoop]
    try:
        import uvloop

        base = uvloop.Loop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop on Linux
        base = asyncio.SelectorEventLoop

    class GatewayLoop(_TlsDeadlines, base):  # type: ignore[valid-type,misc]  # base: a variable
        pass

    def new_loop() -> asyncio.AbstractEventLoop:
        loop = GatewayLoop()
        loop.tls_timeout_s = tls_timeout_s
        return loop

    return new_loop


def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    tls_cert: Path | None,
    tls_key: Path | None,
    unsafe_http: bool,
) -> None:
    node = open_node(settings)
    # Refuse to serve without a working sandbox.
    check_sandbox(SandboxHost.detect(settings.data_dir, settings.sandbox))
    limits = settings.connections
    # Only requests whose head is complete count against capacity; idle and
    # half-sent connections are bounded by the protocol's deadlines and caps.
    app = InFlightLimit(create_app(node), limits.max_in_flight)
    certfile: str | None = None
    keyfile: str | None = None
    if unsafe_http:
        log.warning(
            "UNSAFE: serving plain HTTP (--unsafe-http); credentials cross the network in clear"
        )
    else:
        certfile = str(tls_cert or settings.tls_cert_path)
        keyfile = str(tls_key or settings.tls_key_path)
    # Proxy headers (X-Forwarded-For/-Proto) only from the configured proxies; none by default.
    trusted = list(settings.trusted_proxies)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        ws="none",
        http=protocol_for(limits, settings.trusted_proxies),
        limit_concurrency=None,
        timeout_keep_alive=limits.keepalive_timeout_s,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    server = uvicorn.Server(config)
    with asyncio.Runner(loop_factory=_loop_factory(limits.handshake_timeout_s)) as runner:
        runner.run(server.serve())
