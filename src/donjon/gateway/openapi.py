"""The OpenAPI 3.1 description of the HTTP API (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_PROBLEM = {
    "description": "RFC 9457 problem document",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
_ERRORS = dict.fromkeys(("400", "401", "403", "404"), _PROBLEM)


def _op(summary: str, ok: str = "200", body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {ok: {"description": "success"}, **_ERRORS},
        "security": [{"bearer": []}],
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    return op


def openapi_document(version: str) -> dict[str, Any]:
    json_body: dict[str, Any] = {"application/json": {"schema": {}}}
    name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Donjon", "version": version},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "request_id": {"type": "string"},
                    },
                }
            },
        },
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/v1/functions": {
                "get": _op("List functions"),
                "post": _op(
                    "Deploy a bundle (tar.gz)",
                    "201",
                    {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
                ),
            },
            "/v1/functions/{name}": {
                "parameters": name,
                "get": _op("Get a function"),
                "delete": _op("Remove a function", "204"),
            },
            "/v1/functions/{name}/invoke": {
                "parameters": name,
                "post": _op("Invoke a function", "200", json_body),
            },
            "/v1/functions/{name}/logs": {
                "parameters": name,
                "get": _op("A function's output per invocation"),
            },
            "/v1/functions/{name}/permissions/unused": {
                "parameters": [
                    *name,
                    {
                        "name": "days",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 3650},
                    },
                ],
                "get": _op("The function's grants unused in the last N days (default 90)"),
            },
            "/v1/keys": {
                "get": _op("List API keys"),
                "post": _op("Create an API key", "201", json_body),
            },
            "/v1/keys/{key_id}": {
                "parameters": [
                    {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "delete": _op("Revoke an API key", "204"),
            },
            "/v1/keys/{key_id}/rotate": {
                "parameters": [
                    {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "post": _op("A new secret for a key; the old one works for the overlap", "201"),
            },
            "/v1/roles": {
                "get": _op("List roles (built in and custom)"),
                "post": _op("Create or replace a custom role", "201", json_body),
            },
            "/v1/roles/{role}": {
                "parameters": [
                    {"name": "role", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "delete": _op("Remove a custom role", "200"),
            },
            "/v1/audit": {"get": _op("The newest audit records")},
            "/v1/issuers": {
                "get": _op("List trusted JWT issuers"),
                "post": _op("Trust a JWT issuer (admins only)", "201", json_body),
            },
            "/v1/issuers/{issuer}": {
                "parameters": [
                    {"name": "issuer", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "delete": _op("Stop trusting a JWT issuer", "204"),
            },
            "/v1/runtime": {
                "get": _op("The sandbox's interpreter and platforms, to vendor wheels for")
            },
            "/metrics": {"get": _op("Prometheus metrics")},
        },
    }
