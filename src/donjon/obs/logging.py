"""The server's logs: structlog over `logging`, JSON lines (or a console view on a terminal).

One pipeline renders every line, whoever wrote it: Donjon's modules keep using
`logging.getLogger("donjon...")` (or `structlog.get_logger()`), uvicorn and
libraries too; structlog's `ProcessorFormatter` turns each into an event dict,
adds the time (UTC, ISO 8601), the level, the logger's name and whatever the
current context binds (the request id: `bind_request_id`), renders its
traceback to text, passes it through the redaction step (redaction.py), and
writes one JSON object per line (`level` upper-case, as `logging` names it) or
structlog's console rendering when stderr is a terminal.

The request id: the gateway binds the id it gives a request (gateway/access.py
`new_request_id`) in the request's own context (contextvars: each request runs
in a task of its own), so every line logged while it is served carries
`request_id`, from the gateway, the sandbox pool and the sandbox's host side,
and the audit writer's caller. The egress proxy serves a sandbox's connections
in tasks of its own and binds the id of the call a connection names
(egress/proxy.py). Inside the sandbox the function's own log lines carry the
same id (Lambda's format: `sandbox/runtime/lambda_env.py`), and so does the
call's audit record (`detail.request_id`).
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import structlog

from donjon.obs.errors import ObservabilityError
from donjon.obs.redaction import redact_event

__all__ = [
    "LEVELS",
    "REQUEST_ID_LENGTH",
    "bind_request_id",
    "clear_log_context",
    "configure_logging",
    "mint_request_id",
]

LEVELS = ("debug", "info", "warning", "error", "critical")
#: Marks the handler this module installs, so configuring again replaces it.
_HANDLER_NAME = "donjon-structlog"
#: Ticks a second of a request id's leading clock (`mint_request_id`).
_ID_CLOCK = 64
#: Hex digits of a request id: the clock's four, then 64 random bits.
REQUEST_ID_LENGTH = 20
_clock = time.time


def mint_request_id() -> str:
    """A new request id (`REQUEST_ID_LENGTH` = 20 hex digits), not bound to anything.

    The first four digits are a clock in 64ths of a second that wraps every 17 minutes
    (`_ID_CLOCK`), the other sixteen 64 bits of the kernel's CSPRNG. Ids minted together
    then sort together, so the calls the audit writer commits in one transaction add
    their `invocation_logs` rows to one or two pages of its unique index on `request_id`
    rather than a random page each (docs/performance.md, the eighteenth round). The
    random part alone is what 16 digits of ids were before, so two ids collide no more
    often than then, however the calls bunch in time (with fewer random bits, calls a
    cron starts at each minute would share the clock's few values). A request id is a
    name, never a credential: what it names is checked against the caller."""
    # (`"%04x"`: the clock's two bytes in hex, as `.to_bytes(2, "big").hex()`, no calls)
    return "%04x" % (int(_clock() * _ID_CLOCK) & 0xFFFF) + os.urandom(8).hex()


#: The request id lines logged in this context carry (`_merge_request_id`). A variable of
#: its own, not structlog's `bind_contextvars` (its key made, its variable looked up and a
#: dict built, about ten Python calls on every request: gateway_calls.py).
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "donjon_request_id", default=None
)
#: Lines logged from now on in this context (this request's task) carry the id given
#: (the variable's own `set`: a C call, its token unused).
bind_request_id: Callable[[str], object] = _request_id.set


def clear_log_context() -> None:
    """Forget what this context bound (a task that serves something else than its creator)."""
    _request_id.set(None)
    structlog.contextvars.clear_contextvars()


def _merge_request_id(_logger: Any, _method: str, event_dict: Any) -> Any:
    """The context's request id, unless the line names one of its own (as structlog's
    `merge_contextvars` would merge a bound one)."""
    request_id = _request_id.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def _upper_level(_logger: Any, _method: str, event_dict: Any) -> Any:
    level = event_dict.get("level")
    if isinstance(level, str):
        event_dict["level"] = level.upper()
    return event_dict


def _shared_processors() -> list[Any]:
    """What every line gets, whether structlog or `logging` produced it."""
    return [
        structlog.contextvars.merge_contextvars,
        _merge_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(
    *, json: bool | None = None, level: str = "info", stream: TextIO | None = None
) -> None:
    """Send every log line of this process to `stream` (stderr), rendered and redacted.

    `json=None` renders JSON unless the stream is a terminal (then the console
    view, colours included). Calling it again replaces what it installed.
    """
    name = level.lower()
    if name not in LEVELS:
        raise ObservabilityError(
            f"unknown log level {level!r}", hint=f"use one of {', '.join(LEVELS)}"
        )
    out = stream if stream is not None else sys.stderr
    if json is None:
        json = not (hasattr(out, "isatty") and out.isatty())
    shared = _shared_processors()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer(sort_keys=False, default=str)
    else:
        # Tracebacks arrive as text (redacted): printed as they are.
        renderer = structlog.dev.ConsoleRenderer(
            colors=True, exception_formatter=structlog.dev.plain_traceback
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text here, so the redaction below sees them too.
            structlog.processors.format_exc_info,
            redact_event,
            *([_upper_level] if json else []),
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(name.upper())
