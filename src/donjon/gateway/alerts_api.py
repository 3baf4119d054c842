"""`GET /v1/alerts`: the monitor's alerts, newest `n` (oldest first), from the alerts index.

Query: `since` (Unix seconds; the CLI reads ages and ISO 8601), `kind` (a finding
kind: `auth.credential_stuffing`), `n` (1 to 1000, default 100), `before` (a seq:
the page before it). Needs `alert:read`. Each alert names its `seq` in the audit
log, and the audit seqs it rests on (`evidence`): `donjon audit prove SEQ`.
A reader allowed `alert:read` on some functions only lists the alerts whose subject
is one of them (`function:NAME`); the others (a source's, a key's) are node-wide
(gateway/read_scope.py). Such a listing reads at most 20,000 alerts: one that ran out
says where to go on in `x-donjon-next-before`. Read on the audit read threads, as the
audit pages are, a few at a time (gateway/proof_work.py).
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from donjon.gateway.access import query_time
from donjon.gateway.errors import BadRequest
from donjon.gateway.node import Node
from donjon.gateway.read_scope import read_scope
from donjon.gateway.schemas import render
from donjon.gateway.views import AlertView
from donjon.identity import Action, Principal
from donjon.monitor.alerts import MAX_LIST, AlertStore

__all__ = ["list_alerts"]

KIND_PATTERN = r"^[a-z][a-z0-9_.]{0,127}$"
_KIND = re.compile(KIND_PATTERN)
MAX_SEQ = 999_999_999_999_999_999


def _whole(request: Request, name: str, default: int | None, most: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 1 <= int(raw) <= most:
        raise BadRequest(f"{name} must be a whole number from 1 to {most}")
    return int(raw)


async def list_alerts(request: Request, node: Node, principal: Principal, _r: str) -> Response:
    params = request.query_params
    since = query_time(request, "since")
    kind = params.get("kind")
    if kind is not None and not _KIND.fullmatch(kind):
        raise BadRequest("kind must be a finding kind such as auth.credential_stuffing")
    n = _whole(request, "n", 100, MAX_LIST) or 100
    before = _whole(request, "before", None, MAX_SEQ)
    store = node.alerts or AlertStore(node.engine)
    scope = read_scope(node, principal, Action.ALERTS)
    page = await node.audit_reads.run(
        principal.label,
        store.listing,
        since=since,
        kind=kind,
        n=n,
        before=before,
        keep=None if scope.everything else lambda a: scope.subject(str(a.get("subject"))),
    )
    response = render([AlertView.model_validate(a) for a in page.alerts])
    if page.go_on is not None:  # a scoped listing that ran out of reading: go on from there
        response.headers["x-donjon-next-before"] = str(page.go_on)
    return response
