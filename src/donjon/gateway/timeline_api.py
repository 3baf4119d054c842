"""`GET /v1/audit/timeline` (audit:read): the forensic timeline, filtered on the server.

Query: `since`, `until` (seconds since the epoch), `function`, `principal`,
`request` (a request id), `source` (a client address), `after` (the cursor a
previous page returned as `next`), `n` (matches per page, 1-1000). The body is
`{"records": [...], "next": seq | null}`: each record as stored, with its
`seq` and a `category`; `next` is where the following page starts (null: the
end). What a page reads is bounded (audit/timeline.py), so a filter that
matches little may return an empty page with a `next`: keep paging. A reader
allowed `audit:read` on some functions only reads the records about them
(gateway/read_scope.py), whatever the filters.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response

from donjon.audit.timeline import TimelineFilter, read_timeline
from donjon.gateway.access import query_time
from donjon.gateway.errors import BadRequest
from donjon.gateway.guarded import guarded
from donjon.gateway.node import Node
from donjon.gateway.read_scope import read_scope
from donjon.gateway.schemas import rendered_list
from donjon.identity import Action, Principal
from donjon.manifest.model import NAME_RE

__all__ = ["MAX_PAGE", "ROUTES"]

MAX_PAGE = 1000
_FUNCTION = re.compile(NAME_RE)
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PRINCIPAL = re.compile(r"[!-~]{1,256}")
_CURSOR = re.compile(r"[0-9]{1,18}")


def _match(request: Request, name: str, pattern: re.Pattern[str], what: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is not None and not pattern.fullmatch(raw):
        raise BadRequest(f"{name} must be {what}")
    return raw


def timeline_filter(request: Request) -> TimelineFilter:
    """The filters of the query, each checked; `BadRequest` naming the first bad one."""
    source = request.query_params.get("source")
    if source is not None:
        try:
            source = str(ipaddress.ip_address(source))
        except ValueError:
            raise BadRequest("source must be an IP address") from None
    # `until` before `since` is simply an empty timeline, not an error.
    return TimelineFilter(
        since=query_time(request, "since"),
        until=query_time(request, "until"),
        function=_match(request, "function", _FUNCTION, "a function name"),
        principal=_match(
            request, "principal", _PRINCIPAL, "a principal (key:ID, a key id, jwt:ISSUER:SUB)"
        ),
        request_id=_match(
            request, "request", _REQUEST_ID, "a request id (up to 64 letters, digits, - _ . :)"
        ),
        source=source,
    )


async def audit_timeline(request: Request, node: Node, principal: Principal, _r: str) -> Response:
    flt = timeline_filter(request)
    after = _match(request, "after", _CURSOR, "a cursor: the `next` of a previous page")
    raw_n = request.query_params.get("n", "200")
    if not (
        raw_n.isascii() and raw_n.isdigit() and len(raw_n) <= 4 and 1 <= int(raw_n) <= MAX_PAGE
    ):
        raise BadRequest(f"n must be a whole number from 1 to {MAX_PAGE}")
    scope = read_scope(node, principal, Action.AUDIT)
    # On the audit read threads, a few at a time (gateway/proof_work.py).
    body = await node.audit_reads.run(
        principal.label,
        _page_body,
        node.engine,
        flt,
        after=None if after is None else int(after),
        limit=int(raw_n),
        keep=None if scope.everything else scope.record,
    )
    return Response(body, media_type="application/json")


def _page_body(engine: Engine, flt: TimelineFilter, **read: Any) -> bytes:
    """A page as `render_json({"records": ..., "next": ...})` renders it, made here, on an
    audit read thread, a record at a time (schemas.rendered_list): a page rendered on the
    loop held it for every other tenant. Records hold what callers sent (a refused
    request's lone surrogate): it is escaped, so no record makes the timeline a 500."""
    page = read_timeline(engine, flt, **read)
    after = json.dumps(page.next_after).encode()
    return b'{"records":' + rendered_list(page.records) + b',"next":' + after + b"}"


ROUTES: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
    ("/v1/audit/timeline", "GET", guarded(Action.AUDIT, audit_timeline)),
]
