"""The table of hostile requests test_attack_api_input_sweep.py sends to every route of the
HTTP API (gateway/operations.py lists them): wrong JSON types in every field, huge and
non-finite numbers, long strings, NUL, lone surrogates, CR/LF, look-alikes, missing and
extra fields, bodies that are not JSON or not objects, wrong content types, bad and
repeated query parameters and hostile path parameters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from donjon.gateway.operations import OPERATIONS

__all__ = ["BASELINES", "LISTINGS", "Case", "cases", "field_case", "nested_cases"]

#: The listings a refused request must leave as they were.
LISTINGS = (
    "/v1/keys",
    "/v1/roles",
    "/v1/issuers",
    "/v1/secrets",
    "/v1/functions",
    "/v1/quotas",
    "/v1/dlq",
    "/v1/responses",
)

#: JSON values of every type, and the numbers and strings that break parsers.
VALUES: tuple[Any, ...] = (
    None,
    [],
    [1, "a"],
    {},
    {"a": 1},
    0,
    -1,
    2**64,
    1e308,
    -1e308,
    True,
    False,
    "",
    "x" * 100_000,
    "a\x00b",
    "a\r\nX-Injected: 1",
    "\u0430dmin",  # a Cyrillic a
    "\uff41dmin",  # a full-width a
)
#: Raw JSON texts json.dumps cannot write: non-finite literals, a lone surrogate.
RAW_VALUES = ("NaN", "Infinity", "-Infinity", '"\\ud800"', '"a\\udfffb"', "1e999")

#: Path parameters an attacker sends instead of a name or an id.
PATH_VALUES = (
    "a%2Fb",
    "..",
    "%2E%2E",
    "..%2F..%2Fetc",
    "x" * 5000,
    "%C3%A9t%C3%A9",
    "%00",
    "a%0D%0Ab",
    "%ED%A0%80",  # a surrogate, UTF-8 encoded: not valid UTF-8
    "%FF%FE",
    "%20",
    "%E2%80%AE",
)
#: Query values where a number, a time or a name is expected.
QUERY_VALUES = (
    "abc",
    "-1",
    "1e308",
    "18446744073709551616",
    "NaN",
    "inf",
    "",
    "\x00",
    "x" * 5000,
    "2026-13-45T99:99:99",
)

#: A body each JSON route accepts, so that one hostile field at a time is what is wrong.
BASELINES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/keys"): {"name": "sweep-key", "role": "auditor"},
    ("POST", "/v1/keys/{key_id}/rotate"): {"overlap_s": 60},
    ("POST", "/v1/roles"): {
        "name": "sweep-role",
        "statements": [{"effect": "allow", "actions": ["audit:read"], "resources": ["*"]}],
    },
    ("POST", "/v1/secrets/{secret}"): {"value": "s3cret"},
    ("POST", "/v1/secrets/{secret}/versions"): {"value": "s3cret"},
    ("POST", "/v1/issuers"): {
        "name": "sweep-issuer",
        "issuer": "https://issuer.example",
        "audience": "donjon",
        "jwks_url": "https://issuer.example/jwks",
        "allowed_roles": ["invoker"],
    },
    ("PUT", "/v1/quotas/{quota}"): {"invocations": 10},
    ("PUT", "/v1/throttles/{subject}"): {"reason": "sweep", "duration_s": 60},
    ("POST", "/v1/functions/{name}/quarantine"): {"reason": "sweep"},
    ("POST", "/v1/dlq/redrive"): {"function": "sweep-fn"},
}


@dataclass(frozen=True)
class Case:
    """One hostile request: `method` `path` (path parameters filled in) with httpx kwargs."""

    method: str
    template: str
    path: str
    what: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method} {self.template} [{self.what}]"


def _fill(template: str, params: dict[str, str], value: str | None = None) -> str:
    """`template` with its parameters from `params`, or every one as `value`."""
    path = template
    for name, good in params.items():
        path = path.replace("{" + name + "}", good if value is None else value)
    return path


def _json(text: str) -> dict[str, Any]:
    return {"content": text.encode("utf-8", "surrogatepass"), "headers": _CT_JSON}


_CT_JSON = {"content-type": "application/json"}


def field_case(key: str, value: Any) -> str:
    """What the case that sends `value` in the field `key` is called."""
    return f"{key}={value!r:.40}"


def _bodies(baseline: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Hostile bodies: every value in every field, missing and extra fields, raw texts."""
    for key in baseline:
        for value in VALUES:
            yield field_case(key, value), {"json": {**baseline, key: value}}
        for raw in RAW_VALUES:
            good = json.dumps({k: v for k, v in baseline.items() if k != key})
            text = good[:-1] + (", " if len(good) > 2 else "") + f'"{key}": {raw}}}'
            yield f"{key}={raw}", _json(text)
        yield f"no {key}", {"json": {k: v for k, v in baseline.items() if k != key}}
    yield "extra field", {"json": {**baseline, "sweep_extra": 1}}
    yield "duplicate key", _json(json.dumps(baseline)[:-1] + ', "x": 1, "x": 2}')


def _generic_bodies() -> Iterator[tuple[str, dict[str, Any]]]:
    """Bodies wrong as a whole: not JSON, empty, not an object, wrong content type."""
    yield "empty body", {"content": b"", "headers": _CT_JSON}
    yield "not JSON", {"content": b"{not json", "headers": _CT_JSON}
    yield "binary", {"content": b"\xff\xfe\x00\x01", "headers": _CT_JSON}
    yield "JSON list", {"json": [1, 2]}
    yield "JSON string", {"json": "text"}
    yield "JSON null", {"json": None}
    yield "JSON number", {"content": b"1e999", "headers": _CT_JSON}
    yield "NaN", {"content": b"NaN", "headers": _CT_JSON}
    yield "lone surrogate", _json('{"\\ud800": "\\udc00x"}')
    yield "form", {"data": {"a": "b"}}
    yield "text/plain", {"content": b"{}", "headers": {"content-type": "text/plain"}}
    bad_charset = {"content-type": "application/json; charset=nope"}
    yield "bad charset", {"content": b"{}", "headers": bad_charset}
    yield "deep", {"content": b"[" * 10_000 + b"]" * 10_000, "headers": _CT_JSON}


#: Routes whose body is not a JSON document of the API's: an event, a bundle.
_OWN_BODIES = (
    "/v1/functions",
    "/v1/functions/{name}/invoke",
    "/2015-03-31/functions/{name}/invocations",
)


def cases(params: dict[str, str]) -> Iterator[Case]:
    """Every hostile case for every /v1/ operation; `params` names the path parameters'
    good values (a real key id, function, secret, ...)."""
    for (method, template), op in OPERATIONS.items():
        if not template.startswith("/v1/") and not template.startswith("/2015"):
            continue
        good = _fill(template, params)
        for value in PATH_VALUES:
            if "{" in template:
                yield Case(method, template, _fill(template, params, value), f"path {value:.20}")
        for p in op.params:
            if p.where != "query":
                continue
            for value in QUERY_VALUES:
                query = {"params": {p.name: value}}
                yield Case(method, template, good, f"{p.name}={value!r:.20}", query)
            twice = [(p.name, "1"), (p.name, "2")]
            yield Case(method, template, good, f"{p.name} twice", {"params": twice})
            bad_utf8 = f"{good}?{p.name}=%ED%A0%80"  # a surrogate, UTF-8 encoded
            yield Case(method, template, bad_utf8, f"{p.name} not UTF-8")
        if method == "GET":
            yield Case(method, template, good, "unknown query", {"params": {"sweep": "\x00"}})
        if method in ("POST", "PUT") and template not in _OWN_BODIES:
            for what, kwargs in _generic_bodies():
                yield Case(method, template, good, what, kwargs)
            for what, kwargs in _bodies(BASELINES.get((method, template), {})):
                yield Case(method, template, good, what, kwargs)


_STATEMENT = BASELINES[("POST", "/v1/roles")]["statements"][0]
_ISSUER = BASELINES[("POST", "/v1/issuers")]


def nested_cases() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(method, path, what, body): every value of VALUES one level down, where a body nests
    (a role's statements and limits, a key's functions, an issuer's roles and JWKS). A
    null limit is the limit left out, so it is not sent."""
    role = BASELINES[("POST", "/v1/roles")]
    for v in VALUES:
        for f in ("effect", "actions", "resources", "sweep_extra"):
            yield (
                "POST",
                "/v1/roles",
                field_case(f"statement.{f}", v),
                {
                    **role,
                    "statements": [{**_STATEMENT, f: v}],
                },
            )
        for f in ("actions", "resources"):
            yield (
                "POST",
                "/v1/roles",
                field_case(f"statement.{f}[0]", v),
                {
                    **role,
                    "statements": [{**_STATEMENT, f: [v]}],
                },
            )
        yield "POST", "/v1/roles", field_case("statements[0]", v), {**role, "statements": [v]}
        for f in ("rate", "burst", "concurrency", "sweep_extra"):
            if v is not None or f == "sweep_extra":
                yield "POST", "/v1/roles", field_case(f"limits.{f}", v), {**role, "limits": {f: v}}
        key = BASELINES[("POST", "/v1/keys")]
        yield "POST", "/v1/keys", field_case("functions[0]", v), {**key, "functions": [v]}
        yield (
            "POST",
            "/v1/issuers",
            field_case("allowed_roles[0]", v),
            {
                **_ISSUER,
                "allowed_roles": [v],
            },
        )
        jwks_issuer = {k: x for k, x in _ISSUER.items() if k != "jwks_url"}
        yield (
            "POST",
            "/v1/issuers",
            field_case("jwks.keys[0]", v),
            {
                **jwks_issuer,
                "jwks": {"keys": [v]},
            },
        )
