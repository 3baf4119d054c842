"""The OpenAPI 3.1 description of the HTTP API, served at /openapi.json.

Generated, never written by hand: the paths are the routes the app serves,
each described by its entry in operations.py, and every schema is the JSON
Schema of the pydantic model that validates that request or shapes that
response (schemas.py). Problems (RFC 9457) share one `Problem` schema.
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.routing import BaseRoute, Route

from donjon.gateway.operations import OPERATIONS, Body, ListOf, Operation, Raw
from donjon.gateway.views import Problem
from donjon.manifest.model import NAME_RE
from donjon.monitor.manual import SUBJECT_PATTERN
from donjon.ratelimit.quota_book import SUBJECT_PATTERN as QUOTA_SUBJECT_PATTERN
from donjon.vault.names import SECRET_NAME_RE

__all__ = ["openapi_document", "served_operations", "template"]

_REF = "#/components/schemas/{model}"
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

_PATH_PARAMS: dict[str, tuple[dict[str, Any], str, str]] = {
    "name": ({"type": "string", "pattern": NAME_RE}, "a function name", "hello"),
    "key_id": ({"type": "string", "minLength": 1}, "an API key's id", "0123456789abcdef"),
    "role": ({"type": "string", "minLength": 1}, "a custom role's name", "billing-invoker"),
    "secret": ({"type": "string", "pattern": SECRET_NAME_RE}, "a secret's name", "stripe-key"),
    "issuer": ({"type": "string", "minLength": 1}, "a trusted issuer's name", "corp"),
    "path": ({"type": "string"}, "the http trigger's path, below /fn/", "hello"),
    "invocation_id": (
        {"type": "string", "minLength": 1, "maxLength": 64},
        "an async invocation's id (from the 202 of an async invoke)",
        "3f1c2a9e-5b7d-4c1e-9a0b-2d4e6f8a1c3e",
    ),
    "quota": (
        {"type": "string", "pattern": QUOTA_SUBJECT_PATTERN},
        "a quota's subject: key:ID, role:NAME or function:NAME",
        "function:hello",
    ),
    "subject": (
        {"type": "string", "pattern": SUBJECT_PATTERN},
        "a throttle's subject: principal:key:ID, principal:jwt:ISSUER:SUB or function:NAME"
        " (DELETE also lifts a source's: source:ADDRESS)",
        "principal:key:0123456789abcdef",
    ),
}

_TAGS = {
    "invoke": "Calling functions: the invoke API and http triggers",
    "lambda": "AWS Lambda's Invoke API, for boto3 and the AWS CLI",
    "functions": "Deploying, reading and removing functions; their logs",
    "keys": "API keys",
    "roles": "Custom roles (policy documents)",
    "secrets": "The vault: values go in, never out",
    "issuers": "Trusted JWT issuers",
    "audit": "The tamper-evident audit log",
    "responses": "The monitor's automatic responses: throttles and quarantines, and their undoing",
    "node": "The node itself",
    "dlq": "The dead-letter queue of async invocations (admins)",
    "quotas": "Daily quotas per key, role or function (denial of wallet), with today's usage",
}

_ERROR_MEANING = {
    400: "the request is malformed",
    401: "missing, invalid or revoked credentials",
    403: "the credential does not allow that",
    404: "no such resource (or, for functions, none the caller may see)",
    409: "the change conflicts with the current state",
    413: "the body is over the route's limit",
    422: "well-formed, but refused (manifest, bundle, scan, input schema, secret)",
    429: (
        "over a rate limit (RateLimit-Policy and RateLimit name the bucket) or the function's"
        " concurrency limit; Retry-After says when to come back"
    ),
    500: "an internal error (the server log has the details), or, for a call, the function failed",
    501: "not available on this node yet",
    502: "the function crashed or answered what the gateway cannot send",
    503: (
        "busy (a concurrency cap stayed full for its bounded wait, or the queue is full), or"
        " the sandbox could not start; Retry-After may say when to come back"
    ),
    504: "the function ran past its timeout",
    507: "the function ran past its memory limit",
}


def template(path: str) -> str:
    """A Starlette route path as an OpenAPI path template (`{path:path}` -> `{path}`)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def served_operations(routes: Iterable[BaseRoute]) -> tuple[list[tuple[str, str]], list[str]]:
    """The (METHOD, path) pairs served, and those served but missing from the catalog.

    The HEAD Starlette adds to every GET route is not an operation of its own.
    """
    served: list[tuple[str, str]] = []
    missing: list[str] = []
    for route in routes:
        if not isinstance(route, Route):
            continue
        path = template(route.path)
        methods = route.methods or set()
        for method in sorted(methods):
            key = (method, path)
            if key in OPERATIONS:
                served.append(key)
            elif not (method == "HEAD" and "GET" in methods):
                missing.append(f"{method} {path}")
    return served, missing


def _models(body: Body | None) -> list[type[BaseModel]]:
    if isinstance(body, ListOf):
        return [body.model]
    if isinstance(body, type) and issubclass(body, BaseModel):
        return [body]
    return []


def _example(model: type[BaseModel]) -> Any:
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return examples[0] if isinstance(examples, list) and examples else None


def _content(body: Body, refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    if isinstance(body, Raw):
        return body.content
    if isinstance(body, ListOf):
        media: dict[str, Any] = {"schema": {"type": "array", "items": refs[body.model]}}
        example = _example(body.model)
        if example is not None:
            media["example"] = [example]
        return {"application/json": media}
    media = {"schema": refs[body]}
    example = _example(body)
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _headers(names: dict[str, str]) -> dict[str, Any]:
    return {n: {"description": d, "schema": {"type": "string"}} for n, d in names.items()}


def _error(status: int, op: Operation) -> dict[str, Any]:
    phrase = http.HTTPStatus(status).phrase
    content: dict[str, Any] = {
        "application/problem+json": {
            "schema": _PROBLEM_REF,
            "example": {
                "type": "about:blank",
                "title": phrase,
                "status": status,
                "detail": _ERROR_MEANING.get(status, phrase),
                "request_id": "5f2c1e0a9b7d3c41",
            },
        }
    }
    if op.auth == "optional":  # an http trigger's function may answer any status itself
        content["*/*"] = {"schema": {}}
    elif op.auth == "sigv4":
        content["application/json"] = {"schema": {"type": "object"}}
    response: dict[str, Any] = {
        "description": f"{phrase}: {_ERROR_MEANING.get(status, phrase)}",
        "content": content,
    }
    named = {"retry-after": "seconds to wait"} if status in (429, 503) else {}
    if status == 401:
        named["www-authenticate"] = "the authentication scheme to use"
    if op.auth != "none":
        named["x-request-id"] = "the request's id in the audit log"
    if named:
        response["headers"] = _headers(named)
    return response


def _operation(
    method: str, path: str, op: Operation, refs: dict[type[BaseModel], dict[str, Any]]
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    ok_headers = {**op.headers}
    if op.auth != "none":
        ok_headers.setdefault("x-request-id", "the request's id in the audit log")
    for status, body in op.ok.items():
        response: dict[str, Any] = {
            "description": body.description
            if isinstance(body, Raw) and body.description
            else http.HTTPStatus(status).phrase
        }
        if body is not None:
            response["content"] = _content(body, refs)
        if ok_headers:
            response["headers"] = _headers(ok_headers)
        responses[str(status)] = response
    # Any request may meet an internal error (a defect, an unavailable database): a 500
    # that names no internals (problems.py), listed on every operation.
    for status in sorted({*op.errors, 500}):
        responses[str(status)] = _error(status, op)
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": _PATH_PARAMS[name][1],
            "schema": _PATH_PARAMS[name][0],
            "example": _PATH_PARAMS[name][2],
        }
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    parameters += [
        {
            "name": p.name,
            "in": p.where,
            "description": p.description,
            "schema": p.schema,
            **({"required": True} if p.required else {}),
        }
        for p in op.params
    ]
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": {
            "bearer": [{"bearer": []}],
            "none": [],
            "optional": [{"bearer": []}, {}],
            "sigv4": [{"sigv4": []}],
        }[op.auth],
        "responses": responses,
    }
    if op.description:
        out["description"] = op.description
    if parameters:
        out["parameters"] = parameters
    if op.request is not None:
        required = not (
            isinstance(op.request, type)
            and all(not f.is_required() for f in op.request.model_fields.values())
        )
        request: dict[str, Any] = {"required": required, "content": _content(op.request, refs)}
        if isinstance(op.request, Raw) and op.request.description:
            request["description"] = op.request.description
        out["requestBody"] = request
    return out


def openapi_document(version: str, routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The document for the routes the app serves (those the catalog describes)."""
    served, _ = served_operations(routes)
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Problem, "serialization")]
    for key in served:
        op = OPERATIONS[key]
        wanted += [(m, "validation") for m in _models(op.request)]
        for body in op.ok.values():
            wanted += [(m, "serialization") for m in _models(body)]
    wanted = list(dict.fromkeys(wanted))
    mapping, defs = models_json_schema(wanted, ref_template=_REF)
    refs: dict[type[BaseModel], dict[str, Any]] = {}
    for (model, _), schema in mapping.items():
        if isinstance(model, type) and issubclass(model, BaseModel):
            refs[model] = schema
    paths: dict[str, dict[str, Any]] = {}
    for method, path in served:
        paths.setdefault(path, {})[method.lower()] = _operation(
            method, path, OPERATIONS[(method, path)], refs
        )
    tags = sorted({OPERATIONS[k].tag for k in served})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Donjon",
            "version": version,
            "description": "A self-hosted serverless platform. Errors are RFC 9457 problem "
            "documents (application/problem+json) carrying the request id.",
        },
        "tags": [{"name": t, "description": _TAGS[t]} for t in tags],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a Donjon API key (dj_...) or a JWT of a trusted issuer",
                },
                "sigv4": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "AWS Signature Version 4: a Donjon key's id as access key id",
                },
            },
            "schemas": defs.get("$defs", {}),
        },
        "paths": paths,
    }
