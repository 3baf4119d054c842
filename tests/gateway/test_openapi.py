"""/openapi.json: generated from the app's routes and the pydantic models, and complete."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from donjon import __version__
from donjon.gateway import queue_views, quota_views, views
from donjon.gateway.app import create_app
from donjon.gateway.node import Node
from donjon.gateway.openapi import openapi_document, served_operations, template
from donjon.gateway.schemas import KeyCreate, KeyRotate, SecretRotation, SecretValue
from donjon.gateway.views import KeyView, Problem
from donjon.identity.issuers import IssuerRequest
from donjon.identity.policy_doc import RoleDocument
from harness import LiveNode

_REF = "#/components/schemas/{model}"
_MODELS: dict[str, type[BaseModel]] = {
    **{
        m.__name__: m
        for m in (KeyCreate, KeyRotate, SecretValue, SecretRotation, RoleDocument, IssuerRequest)
    },
    **{name: getattr(views, name) for name in views.__all__},
    **{name: getattr(quota_views, name) for name in quota_views.__all__},
    **{
        name: getattr(queue_views, name)
        for name in queue_views.__all__
        if isinstance(getattr(queue_views, name), type)
    },
}
_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _routes() -> list[BaseRoute]:
    """The routes a node's app serves (the app is built, not started: no node behind it)."""
    stub = SimpleNamespace(registry=SimpleNamespace(schedules=lambda: []))
    return list(create_app(cast(Node, stub)).routes)


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in _METHODS
    ]


async def _endpoint(request: Request) -> Response:
    return Response()


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document(__version__, _routes())


def test_every_route_the_app_serves_is_documented(doc: dict[str, Any]) -> None:
    """Each (method, path) of the route table is an operation, and nothing else is.

    The HEAD Starlette adds beside each GET is the GET's; /fn/ serves HEAD on purpose.
    """
    served: set[tuple[str, str]] = set()
    for route in _routes():
        assert isinstance(route, Route)
        served |= {(m, template(route.path)) for m in route.methods or ()}
    documented = {(m, p) for m, p, _ in _operations(doc)}
    assert documented <= served
    assert all(m == "HEAD" and ("GET", p) in documented for m, p in served - documented)
    assert served_operations(_routes())[1] == []
    assert ("POST", "/v1/functions/{name}/invoke") in documented
    assert {m for m, p in documented if p == "/fn/{path}"} == {
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"
    }  # fmt: skip


def test_a_route_missing_from_the_catalog_is_reported() -> None:
    """A route added to the app without its operation fails the completeness check."""
    extra = Route("/v1/widgets", _endpoint, methods=["GET"])
    assert served_operations([*_routes(), extra])[1] == ["GET /v1/widgets"]


def test_the_lambda_invoke_api_is_documented_once_its_route_is_served() -> None:
    """The Lambda Invoke API's operation appears exactly when the app mounts its route."""
    path = "/2015-03-31/functions/{name}/invocations"
    others = [r for r in _routes() if not (isinstance(r, Route) and r.path == path)]
    assert path not in openapi_document(__version__, others)["paths"]
    assert path in openapi_document(__version__, _routes())["paths"]  # the app serves it
    mounted = [*others, Route(path, _endpoint, methods=["POST"])]
    assert served_operations(mounted)[1] == []
    op = openapi_document(__version__, mounted)["paths"][path]["post"]
    assert op["operationId"] == "lambdaInvoke"
    assert op["security"] == [{"sigv4": []}]
    assert {p["name"] for p in op["parameters"]} >= {"name", "X-Amz-Invocation-Type"}


def test_every_operation_has_an_id_a_tag_and_a_summary(doc: dict[str, Any]) -> None:
    """operationIds are unique; every tag used is declared with a description."""
    ops = _operations(doc)
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids))
    declared = {t["name"] for t in doc["tags"] if t["description"]}
    for method, path, op in ops:
        assert op["summary"], (method, path)
        assert op["tags"] and set(op["tags"]) <= declared, (method, path)


def test_every_path_parameter_is_declared_with_an_example(doc: dict[str, Any]) -> None:
    """Each {param} of a path is a required path parameter with a schema and an example."""
    for method, path, op in _operations(doc):
        declared = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "path"}
        assert set(declared) == set(re.findall(r"\{(\w+)\}", path)), (method, path)
        for p in declared.values():
            assert p["required"] is True and p["schema"] and p["example"], (method, path)


#: The probes: their 503 is the same report of the node's state as their 200.
PROBES = {"/healthz", "/readyz"}


def test_every_error_status_is_a_problem_document(doc: dict[str, Any]) -> None:
    """Every 4xx/5xx an operation lists is application/problem+json with the Problem schema,
    but the probes' 503, which is their 200's body (docs/observability.md)."""
    for method, path, op in _operations(doc):
        statuses = {int(s) for s in op["responses"]}
        assert any(200 <= s < 300 for s in statuses), (method, path)
        if op["security"] != []:
            assert 401 in statuses, (method, path)
        if path in PROBES:
            ok, unwell = (op["responses"][s]["content"]["application/json"] for s in ("200", "503"))
            assert ok["schema"] == unwell["schema"], path
            continue
        for status in (s for s in statuses if s >= 400):
            media = op["responses"][str(status)]["content"]["application/problem+json"]
            assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, (method, path)
            assert media["example"]["status"] == status


def test_every_json_body_has_a_schema_and_examples(doc: dict[str, Any]) -> None:
    """Request bodies and JSON responses carry schemas; request bodies carry examples."""
    for method, path, op in _operations(doc):
        body = op.get("requestBody")
        if body is not None:
            for media in body["content"].values():
                assert "schema" in media, (method, path)
                if "$ref" in media["schema"]:
                    assert "example" in media, (method, path)
        for status, response in op["responses"].items():
            for media in response.get("content", {}).values():
                assert "schema" in media, (method, path, status)


def test_every_example_is_valid_for_its_model(doc: dict[str, Any]) -> None:
    """Each JSON body's example is accepted by the model it illustrates (and there is one)."""
    for method, path, op in _operations(doc):
        bodies = [op.get("requestBody", {})] + [
            r for s, r in op["responses"].items() if s.startswith("2")
        ]
        for body in bodies:
            media = body.get("content", {}).get("application/json")
            if media is None or "$ref" not in json.dumps(media["schema"]):
                continue
            assert "example" in media, (method, path)
            name = json.dumps(media["schema"]).split("/")[-1].rstrip('"}')
            model = _MODELS[name]
            examples = media["example"] if "items" in media["schema"] else [media["example"]]
            for example in examples:
                model.model_validate(example)


def test_schemas_are_the_models_that_validate_and_render(doc: dict[str, Any]) -> None:
    """The document's schemas are the pydantic models' own JSON Schemas."""
    schemas = doc["components"]["schemas"]
    assert schemas["KeyCreate"] == KeyCreate.model_json_schema(ref_template=_REF)
    assert schemas["KeyView"] == KeyView.model_json_schema(ref_template=_REF, mode="serialization")
    assert schemas["Problem"] == Problem.model_json_schema(ref_template=_REF, mode="serialization")
    create_key = doc["paths"]["/v1/keys"]["post"]
    assert create_key["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KeyCreate"
    }


def test_the_node_serves_the_generated_document(node: LiveNode, doc: dict[str, Any]) -> None:
    """GET /openapi.json on a live node is the document generated from its route table."""
    with node.client() as c:
        served = c.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == doc


def test_a_malformed_body_gets_one_error_naming_every_problem(node: LiveNode) -> None:
    """A create-key body with several wrong fields is one 400 listing each of them."""
    with node.client() as c:
        r: httpx.Response = c.post("/v1/keys", json={"name": 5, "role": [], "expires_in_s": -1})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    detail = r.json()["detail"]
    assert all(field in detail for field in ("name", "role", "expires_in_s")), detail
    with node.client() as c:
        names = [k["name"] for k in c.get("/v1/keys").json()]
    assert 5 not in names


@pytest.mark.parametrize(
    "path",
    [
        "/v1/audit?n=%C2%B2",  # a superscript two: a Unicode digit, not a number
        "/v1/audit?n=" + "9" * 5000,  # past what int() reads
        "/v1/functions/hello/logs?n=0",
    ],
)
def test_an_out_of_range_count_is_a_400_not_a_crash(node: LiveNode, path: str) -> None:
    """`n` is a whole number within its documented range, else a 400 problem."""
    with node.client() as c:
        r = c.get(path)
    assert r.status_code == 400, r.text
    assert "n must be a whole number" in r.json()["detail"]


def test_a_yes_no_parameter_refuses_other_words(node: LiveNode) -> None:
    """`force` is 1/true/0/false as documented; `maybe` is a 400 and removes nothing."""
    role = {"name": "openapi-flag", "statements": [{"effect": "allow",
            "actions": ["function:read"], "resources": ["hello"]}]}  # fmt: skip
    with node.client() as c:
        assert c.post("/v1/roles", json=role).status_code in (200, 201)
        r = c.delete("/v1/roles/openapi-flag", params={"force": "maybe"})
        assert r.status_code == 400, r.text
        assert "force must be 1, true, 0 or false" in r.json()["detail"]
        assert "openapi-flag" in [x["name"] for x in c.get("/v1/roles").json()]
        assert c.delete("/v1/roles/openapi-flag", params={"force": "true"}).status_code == 200
