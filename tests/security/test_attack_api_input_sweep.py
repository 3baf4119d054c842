"""Invariant 8 swept over the whole HTTP API: every /v1/ route (and the Lambda Invoke API)
gets every kind of hostile input in the table of api_sweep.py, with the admin key.

Each refusal is a problem document (4xx) with a detail that says something; no request
gets a 5xx or leaves a traceback in the node's log; and what a refused request would
have changed (the listings of api_sweep.LISTINGS) is the same after it. The few hostile
values a route takes by design (any text in a secret's value, a reason kept escaped)
are named in ACCEPTED, and nothing else is accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_sweep import BASELINES, LISTINGS, Case, cases, field_case, nested_cases
from harness import LiveNode, start_node
from sec_support import targz


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node of this file's own: its listings change only by what the sweep sends. On the
    session's node (`node`), another file's queued calls went on ending in the dead-letter
    queue while a route's cases ran, and the sweep took that for a refused request's change.
    The admin key's admin bucket is far above the thousands of requests the sweep sends in a few
    seconds (docs/limits.md, "The admin API"): the sweep tests the routes, not that bucket."""
    live = start_node(
        tmp_path_factory.mktemp("api-sweep-node"),
        {
            "DONJON_ADMIN_RATE_PER_PRINCIPAL": "1000000/second",
            "DONJON_ADMIN_BURST_PER_PRINCIPAL": "1000000",
        },
    )
    try:
        yield live
    finally:
        live.stop()


#: Text a label or a reason may hold: kept, and shown escaped (cli/output.py, responses_api).
_TEXT = ("a\x00b", "a\r\nX-Injected: 1", "\u0430dmin", "\uff41dmin")
_RAW_TEXT = ('"\\ud800"', '"a\\udfffb"')
_KEY_ROTATE = "/v1/keys/{key_id}/rotate"
#: (method, route, case) taken by design, each for its reason; nothing else may be taken.
ACCEPTED = {
    # Any text is a secret's value, a key's name, a quarantine's or a throttle's reason.
    *(("POST", "/v1/secrets/{secret}/versions", field_case("value", v)) for v in _TEXT[1:]),
    *(("POST", "/v1/keys", field_case("name", v)) for v in _TEXT),
    *(
        (m, route, what)
        for m, route in (
            ("PUT", "/v1/throttles/{subject}"),
            ("POST", "/v1/functions/{name}/quarantine"),
        )
        for what in (*(field_case("reason", v) for v in _TEXT), *(f"reason={v}" for v in _RAW_TEXT))
    ),
    ("PUT", "/v1/throttles/{subject}", "no duration_s"),  # the default duration
    # A purge of the dead letters of a function that has none purges nothing.
    *(("DELETE", "/v1/dlq", field_case("function", v)) for v in ("abc", "inf")),
    # A rotation's overlap is optional (0: none); the body may be empty or null.
    *(("POST", _KEY_ROTATE, w) for w in ("JSON null", "empty body", "no overlap_s")),
    ("POST", _KEY_ROTATE, field_case("overlap_s", 0)),
    # A quota of 0, or none (only counted), is a quota.
    *(
        ("PUT", "/v1/quotas/{quota}", w)
        for w in ("no invocations", "invocations=0", "invocations=None")
    ),
    ("POST", "/v1/functions/{name}/release", "empty body"),  # reads no body
}
#: Routes that read no body, or read JSON whatever the content type says: any body is
#: ignored, or read as JSON (no browser sends a bearer token across origins unasked).
IGNORES_BODY = {("POST", "/v1/vault/rekey"), ("POST", "/v1/functions/{name}/release")}
LABEL_IGNORED = {"text/plain", "bad charset"}


def _listings(c: httpx.Client) -> dict[str, Any]:
    """What each listing holds, without the fields a request changes by itself."""
    out: dict[str, Any] = {}
    for path in LISTINGS:
        r = c.get(path)
        assert r.status_code == 200, (path, r.text)
        rows = r.json()
        for row in rows if isinstance(rows, list) else []:
            row.pop("last_used_at", None)
        out[path] = rows
    return out


def _check(case: Case, r: httpx.Response, accepted: list[tuple[str, str, str]]) -> None:
    """`r` is no 5xx; a refusal is a problem document saying what is wrong."""
    assert r.status_code < 500, f"{case}: {r.status_code} {r.text[:300]}"
    if r.status_code < 400:
        if case.method not in ("GET", "HEAD"):
            accepted.append((case.method, case.template, case.what))
        return
    assert r.headers["content-type"] == "application/problem+json", f"{case}: {r.text[:200]}"
    body = r.json()
    assert body["status"] == r.status_code, case
    assert len(body.get("detail", "")) >= 10, f"{case}: {body}"


def test_hostile_input_to_every_route_is_refused_clearly_and_changes_nothing(
    own: LiveNode, tmp_path: Path
) -> None:
    """Wrong types, huge numbers, NaN, NUL, lone surrogates, CR/LF, look-alikes, missing
    and extra fields, non-JSON bodies, bad query and path parameters, on every route."""
    # A function of its own: a reason the sweep sends may quarantine or throttle it.
    (tmp_path / "donjon.yaml").write_text("name: sweep-fn\nhandler: main.handler\n")
    (tmp_path / "main.py").write_text("def handler(event, context):\n    return {}\n")
    own.deploy(tmp_path)
    target = own.create_key("sweep-target", "auditor")
    with own.client() as c:
        assert c.post("/v1/secrets/sweep-existing", json={"value": "v"}).status_code == 201
    params = {
        "name": "sweep-fn",
        "key_id": target["id"],
        "role": "auditor",
        "secret": "sweep-existing",
        "issuer": "sweep-issuer",
        "quota": "function:sweep-fn",
        "subject": "function:sweep-fn",
        "invocation_id": "0" * 32,
    }
    log = own.data_dir / "serve.log"
    log_start = log.stat().st_size
    accepted: list[tuple[str, str, str]] = []
    with own.client() as c:
        before = _listings(c)
        group: tuple[str, str] | None = None
        for case in cases(params):
            if (case.method, case.template) != group:
                assert _listings(c) == before, f"a refused request to {group} changed a listing"
                group = (case.method, case.template)
            r = c.request(case.method, case.path, **case.kwargs)
            _check(case, r, accepted)
            if accepted and accepted[-1] == (case.method, case.template, case.what):
                before = _listings(c)  # taken by design: its change is the new baseline
        assert _listings(c) == before
    taken = {
        a
        for a in accepted
        if a not in ACCEPTED and a[:2] not in IGNORES_BODY and a[2] not in LABEL_IGNORED
    }
    assert not taken, "\n".join(map(str, sorted(taken)))
    with log.open("rb") as f:
        f.seek(log_start)
        grown = f.read().decode("utf-8", "replace")
    assert "Traceback" not in grown, grown[grown.index("Traceback") - 300 :][:3000]


def test_a_lone_surrogate_in_a_refused_request_does_not_break_the_audit_timeline(
    own: LiveNode,
) -> None:
    """A refused issuer whose body holds a lone surrogate (a JSON escape, kept in its audit
    record) made GET /v1/audit/timeline a 500 for every page that held the record."""
    with own.client() as c:
        r = c.post(
            "/v1/issuers",
            content=b'{"name": "\\ud800", "\\udfff": 1}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400, r.text
        timeline = c.get("/v1/audit/timeline", params={"request": r.headers["x-request-id"]})
    assert timeline.status_code == 200, timeline.text
    records = timeline.json()["records"]
    assert [rec["action"] for rec in records] == ["issuer.add"]
    assert "\ud800" in records[0]["target"]


def test_hostile_values_nested_in_a_body_are_refused_and_change_nothing(own: LiveNode) -> None:
    """Every JSON type one level down (a role's statement and limits, a key's functions, an
    issuer's roles and keys): a role's `burst: true` was taken as a burst of 1."""
    with own.client() as c:
        before = _listings(c)
        for method, path, what, body in nested_cases():
            r = c.request(method, path, json=body)
            case = Case(method, path, path, what)
            assert 400 <= r.status_code < 500, f"{case}: {r.status_code} {r.text[:300]}"
            _check(case, r, [])
        assert _listings(c) == before


def test_a_trailing_slash_is_a_404_problem_not_a_redirect_to_the_host_header(
    own: LiveNode,
) -> None:
    """`/v1/keys/` was answered 307 with a Location built from the request's Host header
    (any host the client names), and a POST or DELETE told to go again, body and all:
    a path the API has not is a 404 problem document, as every other one is."""
    with own.client() as c:
        for method, path in (("GET", "/v1/keys/"), ("POST", "/v1/keys/"), ("DELETE", "/v1/dlq/")):
            r = c.request(method, path, headers={"host": "attacker.example"})
            assert r.status_code == 404, (method, path, r.status_code, r.headers)
            assert "location" not in r.headers
            assert r.headers["content-type"] == "application/problem+json"
            assert f"nothing at {path}" in r.json()["detail"]


def test_an_issuers_unknown_field_is_named_cut_short_as_a_keys_is(own: LiveNode) -> None:
    """A 60,000-character unknown field in an issuer came back whole in the problem's
    detail; a key's is cut to 64 characters (keys_api.py), and now an issuer's too."""
    with own.client() as c:
        r = c.post("/v1/issuers", json={**BASELINES[("POST", "/v1/issuers")], "x" * 60_000: 1})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert detail.startswith("unknown fields: " + "x" * 64 + " "), detail[:200]
    assert len(detail) < 1000, len(detail)


def test_a_manifest_that_says_a_key_twice_is_refused_and_deploys_nothing(own: LiveNode) -> None:
    """YAML keys are unique (YAML 1.2, 3.2.1.1); PyYAML keeps the last of two. A reviewer
    reading the first `permissions:` (no egress) would pass a manifest whose second one
    grants egress: the deploy is a 422 naming the key and its line, and nothing runs."""
    manifest = (
        b"name: sweep-twice\nhandler: main.handler\npermissions:\n  egress: []\n"
        b"timeout_s: 5\npermissions:\n  egress: ['example.com:443']\n"
    )
    code = b"def handler(event, context):\n    return {}\n"
    archive = targz({"donjon.yaml": manifest, "main.py": code})
    with own.client() as c:
        r = c.post(
            "/v1/functions",
            content=archive,
            headers={"content-type": "application/gzip"},
            params={"unsafe_skip_scan": "true"},
        )
        assert r.status_code == 422, r.text
        assert "line 6" in r.json()["detail"] and "'permissions'" in r.json()["detail"], r.text
        assert c.get("/v1/functions/sweep-twice").status_code == 404
