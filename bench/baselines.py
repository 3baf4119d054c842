"""The baseline function servers, each serving the bench handler with no controls.

    python bench/baselines.py starlette PORT [CERT KEY]   # uvicorn, HTTPS if CERT/KEY given
    python bench/baselines.py flask PORT                  # Flask on waitress, plain HTTP

`starlette` is "a bare Starlette app serving the same handler with no
controls" (DESIGN.md), on uvicorn configured as `donjon serve` configures it
(same loop and HTTP parser: uvicorn's defaults, uvloop and httptools when
installed; no access log; no server header).

`flask` is what OpenFaaS' python3-http template runs (its index.py, trimmed
to the parts a JSON call uses): a Flask app whose catch-all route builds an
Event and a Context and calls the handler, served by waitress with its
defaults (4 threads), plain HTTP as the template serves it behind the
OpenFaaS gateway. The changes: the event handed to the handler is the
decoded JSON body, so that every server calls the very same function, and
waitress's per-request "task queue depth" warning is silenced.

Both answer POST /v1/functions/<name>/invoke like Donjon does, so one load
script drives all of them; they ignore the Authorization header.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

HANDLER_DIR = Path(__file__).parent / "handler"
sys.path.insert(0, str(HANDLER_DIR))
from main import handler


class Context:
    """The fields of Donjon's context that the handler may read."""

    def __init__(self) -> None:
        self.request_id = secrets.token_hex(8)
        self.function_name = "bench"
        self.version = 1


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def invoke(request: Request) -> Response:
        event = json.loads(await request.body() or b"{}")
        result = handler(event, Context())
        return Response(json.dumps(result, separators=(",", ":")), media_type="application/json")

    return Starlette(routes=[Route("/v1/functions/{name}/invoke", invoke, methods=["POST"])])


def serve_starlette(port: int, cert: str | None, key: str | None) -> None:
    import uvicorn

    tls = bool(cert and key)
    config = uvicorn.Config(
        starlette_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        ssl_certfile=cert if tls else None,
        ssl_keyfile=key if tls else None,
    )
    uvicorn.Server(config).run()


def flask_app() -> Any:
    from flask import Flask, request

    app = Flask(__name__)

    class Event:
        def __init__(self) -> None:
            self.body = request.get_data()
            self.headers = request.headers
            self.method = request.method
            self.query = request.args
            self.path = request.path

    class TemplateContext(Context):
        def __init__(self) -> None:
            super().__init__()
            self.hostname = os.getenv("HOSTNAME", "localhost")

    def format_response(res: Any) -> Any:
        if res is None:
            return ("", 200)
        if isinstance(res, dict) and "statusCode" in res:
            return (res.get("body", ""), res["statusCode"], res.get("headers") or {})
        return (json.dumps(res, separators=(",", ":")), 200, {"Content-Type": "application/json"})

    @app.route("/", defaults={"path": ""}, methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
    def call_handler(path: str) -> Any:
        event = Event()
        context = TemplateContext()
        return format_response(handler(json.loads(event.body or b"{}"), context))

    return app


def serve_flask(port: int) -> None:
    import logging

    from waitress import serve

    # waitress logs a warning for every request that waits for a thread; under a
    # 32-connection load that is most of them. Silenced, so the baseline is not
    # slowed by its own logging (a favour to the baseline, never to Donjon).
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    serve(flask_app(), host="127.0.0.1", port=port)


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "starlette":
        tls = sys.argv[3:5]
        serve_starlette(port, *(tls if len(tls) == 2 else (None, None)))
    elif kind == "flask":
        serve_flask(port)
    else:
        raise SystemExit(f"unknown baseline {kind!r}")


if __name__ == "__main__":
    main()
