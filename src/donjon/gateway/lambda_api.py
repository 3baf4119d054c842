"""AWS Lambda's Invoke API: `POST /2015-03-31/functions/{name}/invocations`, signed with SigV4.

So boto3's lambda client and the AWS CLI invoke Donjon functions unchanged
(docs/lambda.md). In this order: the SigV4 header, date and scope -> the body,
bounded -> the signature, against the key's SigV4 secret (identity/sigv4.py) ->
`function:invoke` on the function (the policy and audit of every invoke) -> the
function and qualifier -> `X-Amz-Invocation-Type` and `X-Amz-Client-Context` (DryRun
answers here; an Event pinned to a version is refused) -> rate
limit -> input schema -> (Event: queued durably, 202; gateway/async_invoke.py) -> the
call (invoke.py's `_run`: sandbox, redaction, a durable audit record) -> the answer as
Lambda gives it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import re

from starlette.requests import Request
from starlette.responses import Response

from donjon import boundedjson
from donjon.errors import Error
from donjon.gateway.access import (
    authorize,
    check_throttles,
    client_address,
    deny,
    new_request_id,
    read_body,
)
from donjon.gateway.admission import admit, busy_given_back
from donjon.gateway.async_invoke import enqueue_checked
from donjon.gateway.call_errors import error_response
from donjon.gateway.errors import BadRequest, NotFound, Unauthorized
from donjon.gateway.events import body_limit, check_event, check_event_size
from donjon.gateway.function_errors import FUNCTION_FAILURES, error_fields, may_read_logs
from donjon.gateway.invoke import _run
from donjon.gateway.node import Node
from donjon.gateway.response_policy import function_json_response
from donjon.identity import Principal
from donjon.identity.policy import Action
from donjon.identity.sigv4 import (
    ALGORITHM,
    SignatureRejected,
    SignedRequest,
    check_scope,
    derive_secret,
    parse_authorization,
    signature_matches,
)
from donjon.lifecycle import Deployed
from donjon.manifest.model import NAME_RE
from donjon.sandbox import FunctionResultTooLarge, SandboxError
from donjon.vault import SIGV4_SECRET_PURPOSE

__all__ = ["LAMBDA_INVOKE_PATH", "handle_lambda_invoke"]

LAMBDA_INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"
#: AWS's bound on `X-Amz-Client-Context` (its base64 text), and the members of the object
#: its mobile SDKs send there (the Python runtime's `context.client_context`).
MAX_CLIENT_CONTEXT = 3583
CLIENT_CONTEXT_MEMBERS = ("client", "custom", "env")
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
LOG_TYPES = ("None", "Tail")
#: X-Amz-Log-Result carries the end of the call's log, as Lambda does.
TAIL_BYTES = 4 * 1024
CHALLENGE = f'{ALGORITHM} realm="donjon"'
_NAME = re.compile(NAME_RE)
#: `name`, `name:qualifier`, or an ARN ending in `function:name[:qualifier]`.
_FUNCTION = re.compile(r"^(?:.*:)?function:([^:]+)(?::([^:]+))?$|^([^:]+)(?::([^:]+))?$")
#: The error codes boto3 raises (`ClientError.response["Error"]["Code"]`), by status.
_CODES = {
    400: "InvalidRequestContentException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    413: "RequestTooLargeException",
    422: "InvalidRequestContentException",
    429: "TooManyRequestsException",
    501: "UnsupportedInvocationTypeException",
}


def _target(raw: str, qualifier: str | None) -> tuple[str, str | None]:
    """The function's name and the qualifier asked for, from the path and `Qualifier`."""
    m = _FUNCTION.match(raw)
    name, in_name = (m.group(1) or m.group(3), m.group(2) or m.group(4)) if m else ("", None)
    if not _NAME.match(name):
        raise BadRequest(f"{raw[:128]!r} is not a function name (or an ARN ending in one)")
    if in_name and qualifier and in_name != qualifier:
        raise BadRequest("the function name's qualifier and the Qualifier parameter differ")
    return name, in_name or qualifier


def _signed_request(request: Request, body: bytes) -> SignedRequest:
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.raw:
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return SignedRequest(
        method=request.method,
        raw_path=request.scope.get("raw_path", request.url.path.encode()).decode("latin-1"),
        query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body=body,
    )


async def _refuse(
    node: Node, request: Request, request_id: str, reason: str, key_id: str = "-"
) -> Unauthorized:
    """The bare 401 of a credential that does not verify, its reason audited."""
    await deny(node, request, "anonymous", "auth.denied", reason, request_id, {"key_id": key_id})
    return Unauthorized("missing, invalid or revoked credentials")


async def _authenticate(node: Node, request: Request, request_id: str) -> tuple[Principal, bytes]:
    """The key that signed the request, and its body; `Unauthorized` (audited) otherwise.

    Shape, date and scope are checked before the body is read; the caller is told
    what is wrong with them (nothing secret). Whether the key exists, is revoked or
    expired, or the signature is wrong, only the audit says.
    """
    await check_throttles(node, request, request_id)  # a throttled source (monitor/throttles.py)
    header = request.headers.get("authorization", "")
    if not header:
        raise await _refuse(node, request, request_id, "sigv4: missing credentials")
    head = _signed_request(request, b"")
    try:
        auth = parse_authorization(header)
        amz_date = check_scope(
            auth, head, region=node.settings.lambda_region, now=dt.datetime.now(dt.UTC)
        )
    except SignatureRejected as e:
        # How the request is signed, not whether the key is good: the caller is told.
        await deny(node, request, "anonymous", "auth.denied", e.message, request_id)
        raise Unauthorized(e.message.removeprefix("sigv4: "), hint=_HINT) from None
    # The body is signed: read before the key is known, and held to the function's own
    # `limits.body` once the caller may learn the function exists. Until then, to no more
    # than the largest event any function here takes (the node's maximum only if one takes
    # that; it tells nothing of the function named): a flood of unsigned requests, which
    # pass the checks above with no secret, buffers no more than a call could.
    limit = min(node.settings.requests.max_body_bytes, node.registry.max_body())
    body = await read_body(request, limit)
    signed = dataclasses.replace(head, body=body)
    subkey = node.master.derive(SIGV4_SECRET_PURPOSE)

    def signed_by(digest: bytes | None) -> bool:
        secret = derive_secret(subkey, auth.key_id, digest or b"\0" * 32)
        return signature_matches(secret, auth, signed, amz_date)

    try:
        principal, reason = node.key_index.check_signed(auth.key_id, signed_by)
    except SignatureRejected as e:  # X-Amz-Content-SHA256 that is not the body's
        raise await _refuse(node, request, request_id, e.message, auth.key_id) from None
    if principal is None:
        raise await _refuse(node, request, request_id, reason, auth.key_id)
    await check_throttles(node, request, request_id, principal)
    return principal, signed.body


_HINT = "sign with SigV4: access key id = the key's id, secret = its SigV4 secret"


def _version(deployed: Deployed, qualifier: str | None) -> str:
    version = str(deployed.record.version)
    if qualifier not in (None, "$LATEST", version):
        raise NotFound(
            f"{deployed.name} has no version {qualifier[:64]!r} serving "
            f"(only $LATEST, which is version {version})"
        )
    return version


def _lambda_headers(request_id: str, version: str | None = None) -> dict[str, str]:
    headers = {"x-amzn-requestid": request_id}
    if version is not None:
        headers["x-amz-executed-version"] = version
    return headers


def _tail(log: str) -> str:
    """The last `TAIL_BYTES` of the call's log (whole characters), base64."""
    data = log.encode()[-TAIL_BYTES:]
    return base64.b64encode(data.decode("utf-8", "ignore").encode()).decode()


def _problem(error: Error, request_id: str) -> Response:
    """The problem document (RFC 9457) of `error`, which boto3 also reads as an AWS error:
    its code from `X-Amzn-ErrorType`, its message from the `message` member."""
    plain = error_response(error, request_id)
    status = plain.status_code
    body = json.loads(bytes(plain.body))
    body["message"] = body["detail"]  # where botocore reads an error's message
    dropped = ("content-length", "content-type")
    headers = {k: v for k, v in plain.headers.items() if k not in dropped}
    headers.update(
        {
            "x-amzn-errortype": _CODES.get(status, "ServiceException"),
            "x-amzn-requestid": request_id,
        }
    )
    if status == 401:
        headers["www-authenticate"] = CHALLENGE
    return Response(
        json.dumps(body), status_code=status, headers=headers, media_type=plain.media_type
    )


def _function_error(error: SandboxError, request_id: str, version: str, reveal: bool) -> Response:
    """A failed call as Lambda answers it: 200, `X-Amz-Function-Error: Unhandled`, and
    errorType/errorMessage to callers who may read the logs (the request id to others)."""
    body: dict[str, str] = (
        error_fields(error)
        if reveal
        else {"errorMessage": f"the function failed; see `donjon logs` for request {request_id}"}
    )
    body["requestId"] = request_id
    response = function_json_response(json.dumps(body).encode(), request_id).response
    response.headers.update(_lambda_headers(request_id, version))
    response.headers["x-amz-function-error"] = "Unhandled"
    return response


class ClientContextTooDeep(BadRequest):
    """An `X-Amz-Client-Context` nested deeper than the platform parses (audited)."""


async def _checked_client_context(
    node: Node, request: Request, principal: Principal, request_id: str
) -> dict[str, object] | None:
    """`client_context` of the request's header; nesting past the bound is also audited
    (`input.refused`), as an event's is (access.parse_json)."""
    try:
        return client_context(request.headers.get("x-amz-client-context"))
    except ClientContextTooDeep as e:
        await deny(node, request, principal.label, "input.refused", e.message, request_id)
        raise


def client_context(header: str | None) -> dict[str, object] | None:
    """The caller's `X-Amz-Client-Context` (base64 of a JSON object whose `client`,
    `custom` and `env` are objects), for the handler's `context.client_context`: its three
    members, None where absent. None without the header; anything else is a 400 before
    anything is spent or run."""
    if header is None:
        return None
    bad = "X-Amz-Client-Context must be a base64-encoded JSON object"
    if len(header) > MAX_CLIENT_CONTEXT:
        raise BadRequest(f"{bad} of at most {MAX_CLIENT_CONTEXT} bytes; it has {len(header)}")
    try:
        parsed = boundedjson.loads(base64.b64decode(header, validate=True), finite=True)
    except (binascii.Error, ValueError):
        raise BadRequest(bad) from None
    except boundedjson.JSONTooDeep as e:
        raise ClientContextTooDeep(f"{bad}: {e.message}") from None
    if not isinstance(parsed, dict):
        raise BadRequest(bad)
    members = {name: parsed.get(name) for name in CLIENT_CONTEXT_MEMBERS}
    for name, value in members.items():
        if value is not None and not isinstance(value, dict):
            raise BadRequest(f"{bad}: its {name!r} must be an object")
    return members


async def handle_lambda_invoke(request: Request) -> Response:
    node: Node = request.app.state.node
    request_id = new_request_id()
    try:
        principal, body = await _authenticate(node, request, request_id)
        name, qualifier = _target(
            request.path_params["name"], request.query_params.get("Qualifier")
        )
        await authorize(node, request, principal, Action.INVOKE, request_id, name)
        deployed = node.registry.get(name)
        if deployed is None:
            raise NotFound(f"no function named {name!r}")
        version = _version(deployed, qualifier)
        invocation = request.headers.get("x-amz-invocation-type", "RequestResponse")
        log_type = request.headers.get("x-amz-log-type", "None")
        if invocation not in INVOCATION_TYPES or log_type not in LOG_TYPES:
            raise BadRequest(
                f"X-Amz-Invocation-Type must be one of {', '.join(INVOCATION_TYPES)} and "
                f"X-Amz-Log-Type one of {', '.join(LOG_TYPES)}"
            )
        # Checked for every type; Lambda hands it to synchronous calls only.
        context = await _checked_client_context(node, request, principal, request_id)
        if invocation == "DryRun":  # the caller may invoke it, it exists and it serves
            node.quarantines.check(deployed.record.name)  # 503, as every way into it
            return Response(status_code=204, headers=_lambda_headers(request_id, version))
        if invocation == "Event" and qualifier not in (None, "$LATEST"):
            raise BadRequest(
                f"InvocationType Event takes no version qualifier ({qualifier[:64]!r}): a queued "
                "event runs on the version serving when it is delivered",
                hint="leave the qualifier out (or give $LATEST), or invoke with RequestResponse",
            )
        check_event_size(
            body, deployed, body_limit(deployed, node.settings.requests.max_body_bytes)
        )
        await admit(node, deployed, principal, request_id, "lambda")
        event = body or b"{}"
        checked = check_event(node, request, principal.label, deployed, event, request_id)
        await busy_given_back(checked, node, deployed, principal, "lambda")  # its 503 spends none
        if invocation == "Event":  # queued durably, run with retries (docs/triggers.md)
            # Its source is the function's path, not the caller's: a FunctionName may be an
            # ARN of any length and bytes (a NUL the PostgreSQL queue row refuses).
            source = LAMBDA_INVOKE_PATH.format(name=deployed.name)
            queued = await enqueue_checked(
                node, deployed, principal, event, request, request_id, source
            )
            headers = {**_lambda_headers(request_id), "x-donjon-invocation-id": queued.id}
            return Response(status_code=202, headers=headers)
        logs: list[str] = []
        try:
            response = await _run(
                node,
                deployed,
                principal,
                event,
                request_id,
                "lambda",
                lambda result: function_json_response(result.body, request_id),
                on_log=logs.append,
                client=client_address(request),  # the monitor's first-seen sources
                fields=None if context is None else {"client_context": context},
            )
            response.headers.update(_lambda_headers(request_id, version))
        except (*FUNCTION_FAILURES, FunctionResultTooLarge) as e:  # Lambda: 200, Unhandled
            reveal = may_read_logs(node, principal, deployed)
            response = _function_error(e, request_id, version, reveal)
        # The log is for those who may read it; asked only when the caller wants it.
        if log_type == "Tail" and may_read_logs(node, principal, deployed):
            response.headers["x-amz-log-result"] = _tail(logs[0] if logs else "")
        return response
    except Error as e:
        return _problem(e, request_id)
