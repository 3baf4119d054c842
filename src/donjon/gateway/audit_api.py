"""The audit API (all `audit:read`): paged records, checkpoints, proofs and the export.

GET /v1/audit?n=N[&before=SEQ]            the newest N records (older than SEQ), oldest first
GET /v1/audit/checkpoints?n=N[&before=S]  signed checkpoints, oldest first
GET /v1/audit/proof?seq=S[&size=N]        an inclusion proof (donjon-inclusion-proof/1)
GET /v1/audit/consistency?old=A&new=B     a consistency proof (donjon-consistency-proof/1)
GET /v1/audit/export?since=S&format=jsonl|syslog   streamed (donjon-audit-export/1)

Handlers parse, call audit/prover.py or audit/export.py off the event loop (what
reads the whole log on the proof threads, the pages on the audit read threads:
gateway/proof_work.py), and render;
proofs are served only when the stored leaves still hash to the signed roots
(audit/proofs.py).

A reader allowed `audit:read` on some functions only (gateway/read_scope.py) pages
through the records about them (a page that read `SCAN` records without filling
says where to go on in `x-donjon-next-before`), proves only those (any other seq is
404, as a seq the log does not hold), reads the checkpoints and consistency proofs
(sizes and roots: what its proofs verify against), and may not export the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from donjon import boundedjson
from donjon.audit.checkpoint import CheckpointError, VerifierKey
from donjon.audit.export import ExportFormat, export_lines
from donjon.audit.prover import Prover, kept_records_before, records_before
from donjon.errors import Error
from donjon.gateway.errors import BadRequest, NotFound
from donjon.gateway.node import Node
from donjon.gateway.read_scope import ReadScope, read_scope, require_everything
from donjon.gateway.schemas import rendered_list
from donjon.gateway.views import AuditRecord
from donjon.identity import Action, Principal

__all__ = [
    "MAX_PAGE",
    "audit_checkpoints",
    "audit_consistency",
    "audit_export",
    "audit_proof",
    "audit_tail",
]

#: The most records (or checkpoints) one page holds; `donjon audit tail` pages past it.
MAX_PAGE = 10_000
#: The largest seq or size a query may name (SQLite's integers are 64-bit).
_MAX_INT = 2**62


class AuditKeyMissing(Error):
    title = "Audit signing key missing"


def _int(request: Request, name: str, *, least: int, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not (
        least <= int(raw) <= _MAX_INT
    ):
        raise BadRequest(f"{name} must be a whole number from {least} to {_MAX_INT}")
    return int(raw)


def _count(request: Request) -> int:
    raw = request.query_params.get("n", "20")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(f"n must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def _required(request: Request, name: str, least: int) -> int:
    value = _int(request, name, least=least)
    if value is None:
        raise BadRequest(f"the query needs {name}")
    return value


def _prover(node: Node) -> Prover:
    path = node.settings.audit_signing_pub_path
    try:
        key = VerifierKey.parse(path.read_text().strip())
    except (OSError, CheckpointError) as e:
        raise AuditKeyMissing(
            f"the audit verifier key {path} cannot be read",
            hint="restart the node: it makes the audit signing key when it is missing",
        ) from e
    return Prover(node.engine, key)


def _tail_page(
    node: Node, before: int | None, n: int, keep: Callable[[Mapping[str, Any]], bool] | None
) -> tuple[bytes, int | None]:
    """A page of the tail as its JSON body, and where a scoped reader goes on. Rendered
    here, on an audit read thread, a record at a time: 10,000 records rendered on the
    loop held it for 0.4 s a read, every other tenant's calls waiting."""
    if keep is None:
        records, go_on = records_before(node.engine, before, n), None
    else:
        records, go_on = kept_records_before(node.engine, before, n, keep)
    return rendered_list([AuditRecord.model_validate(r) for r in records]), go_on


async def audit_tail(request: Request, node: Node, principal: Principal, _r: str) -> Response:
    n = _count(request)
    before = _int(request, "before", least=1)
    scope = read_scope(node, principal, Action.AUDIT)
    keep = None if scope.everything else scope.record
    body, go_on = await node.audit_reads.run(principal.label, _tail_page, node, before, n, keep)
    response = Response(body, media_type="application/json")
    if go_on is not None:
        response.headers["x-donjon-next-before"] = str(go_on)
    return response


async def audit_checkpoints(
    request: Request, node: Node, principal: Principal, _r: str
) -> Response:
    n = _count(request)
    before = _int(request, "before", least=0)
    # Each note's signature is checked: a page of 10,000 is a second or more of work.
    stored = await node.proof_work.run(principal.label, _prover(node).checkpoints, n, before)
    return JSONResponse([s.view() for s in stored])


def _prove_in_scope(prover: Prover, scope: ReadScope, seq: int, size: int | None) -> Any:
    """The inclusion proof of record `seq` (it carries the record), if `scope` reads it."""
    if not scope.everything:
        try:
            record = boundedjson.loads(prover.record(seq), finite=True)
        except (ValueError, boundedjson.JSONTooDeep):
            record = None
        if not isinstance(record, dict) or not scope.record(record):
            # The same answer as a seq the log does not hold: nothing tells them apart.
            raise NotFound(f"no audit record {seq}", hint="seqs start at 1")
    return prover.prove(seq, size)


async def audit_proof(request: Request, node: Node, principal: Principal, _r: str) -> Response:
    seq = _required(request, "seq", 1)
    size = _int(request, "size", least=1)
    scope = read_scope(node, principal, Action.AUDIT)
    prover = _prover(node)
    doc = await node.proof_work.run(principal.label, _prove_in_scope, prover, scope, seq, size)
    return JSONResponse(doc)


async def audit_consistency(
    request: Request, node: Node, principal: Principal, _r: str
) -> Response:
    old = _required(request, "old", 0)
    new = _required(request, "new", 0)
    if old > new:  # well-formed, but no such proof exists
        raise NotFound(
            f"no consistency proof from size {old} to the smaller size {new}",
            hint="name the older (smaller) checkpoint first",
        )
    doc = await node.proof_work.run(principal.label, _prover(node).consistency, old, new)
    return JSONResponse(doc)


_CHUNK = 64 * 1024
_MEDIA = {"jsonl": "application/x-ndjson", "syslog": "text/plain; charset=utf-8"}


async def audit_export(
    request: Request, node: Node, principal: Principal, request_id: str
) -> Response:
    await require_everything(node, request, principal, Action.AUDIT, request_id, "the export")
    since = _int(request, "since", least=1, default=1)
    fmt = request.query_params.get("format", "jsonl")
    if fmt not in _MEDIA:
        raise BadRequest("format must be jsonl or syslog")
    export_format: ExportFormat = "jsonl" if fmt == "jsonl" else "syslog"
    prover = _prover(node)
    lines = export_lines(prover, since or 1, export_format)
    # The header is read before the status is sent, so a broken key or store is a
    # problem document, not a truncated 200.
    # ... and read on the proof threads: it folds every leaf before `since`.
    first = await node.proof_work.run(principal.label, next, lines)

    def body() -> Iterator[bytes]:
        # Starlette pulls each chunk in its thread pool: chunks of ~64 KiB, not lines.
        chunk = [first]
        size = len(first)
        for line in lines:
            chunk.append(line)
            size += len(line) + 1
            if size >= _CHUNK:
                yield ("\n".join(chunk) + "\n").encode()
                chunk, size = [], 0
        if chunk:
            yield ("\n".join(chunk) + "\n").encode()

    return StreamingResponse(body(), media_type=_MEDIA[fmt])
