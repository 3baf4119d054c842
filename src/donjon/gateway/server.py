"""Serving the gateway with uvicorn: HTTPS unless told --unsafe-http."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from donjon.config import Settings
from donjon.gateway.app import create_app
from donjon.gateway.node import open_node
from donjon.sandbox import SandboxHost, check_sandbox

__all__ = ["serve"]

log = logging.getLogger("donjon")

MAX_IN_FLIGHT = 1024


def serve(settings: Settings, host: str, port: int, *, tls_cert: Path | None,
          tls_key: Path | None, unsafe_http: bool) -> None:
    node = open_node(settings)
    check_sandbox(SandboxHost.detect(settings.data_dir))  # refuse to serve without it
    app = create_app(node)
    ssl: dict[str, str] = {}
    if unsafe_http:
        log.warning("UNSAFE: serving plain HTTP (--unsafe-http); credentials cross the network "
                    "in clear")
    else:
        ssl = {"ssl_certfile": str(tls_cert or settings.tls_cert_path),
               "ssl_keyfile": str(tls_key or settings.tls_key_path)}
    # limit_concurrency: past this many connections and requests in flight,
    # uvicorn answers 503 at once, so a flood holds a bounded amount of memory.
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="on", server_header=False, limit_concurrency=MAX_IN_FLIGHT,
                            **ssl)  # type: ignore[arg-type]
    uvicorn.Server(config).run()
