"""Invariants 1 and 8 swept over the public trigger routes: every kind of hostile request
in the table of trigger_sweep.py, sent as raw HTTP/1.1 (no client library to tidy it up),
to http triggers under /fn/ (each auth mode and event format), to signed webhooks under
/hooks/ (each scheme) and to a storage hook (an S3-compatible store's push).

Each request gets no 5xx and leaves no traceback in the node's log. A refusal is a problem
document (4xx) saying what is wrong, audited where docs/triggers.md says it is, and runs
nothing; a request taken gives the function an event that says what was sent (its method,
path, query, body and headers; nothing the platform writes itself is the caller's word).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from harness import LiveNode, fresh_source, start_node
from trigger_node import denials, deploy_echo, listings, log_since, outcome, runs, set_secret
from trigger_sweep import (
    EVENT_HEADERS,
    INJECTED,
    ROUTES,
    FnCase,
    Reply,
    fn_cases,
    hook_cases,
    hostile_records,
    malformed_notifications,
    notification,
    post_raw,
    record,
    send_raw,
    sign,
    storage_token_cases,
)
from triggers.webhook_signing import github_headers, new_whsec, standard_headers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node of this file's own: the sweep's refusals and deployments are all it sees."""
    live = start_node(tmp_path_factory.mktemp("trigger-sweep-node"))
    try:
        yield live
    finally:
        live.stop()


def test_a_delivery_taken_before_a_hook_moved_is_a_replay_at_its_new_path(
    own: LiveNode, tmp_path: Path
) -> None:
    """The replay cache was kept per path, but no scheme signs the path: once a function's
    hooks moved (a redeploy with new paths, the same secrets), every delivery taken at the
    old paths was taken again at the new ones: a captured GitHub delivery for 7 days, a
    Standard Webhooks one for 5 minutes. A delivery is remembered under the secret that
    signed it, so it is a replay wherever its secret is checked."""
    std, gh = new_whsec(), "gh-" + new_whsec()
    set_secret(own, "sweep-move-std", std)
    set_secret(own, "sweep-move-gh", gh)

    def deploy_at(prefix: str) -> None:
        deploy_echo(
            own,
            tmp_path,
            "sweep-move",
            f"  - webhook: {{path: {prefix}-std, scheme: standard, secret: sweep-move-std}}\n"
            f"  - webhook: {{path: {prefix}-gh, scheme: github, secret: sweep-move-gh}}\n",
        )

    body = json.dumps({"type": "moved", "n": secrets.token_hex(6)}).encode()
    signed = {"std": standard_headers(std, body), "gh": github_headers(gh, body)}
    deploy_at("/before")
    for kind, headers in signed.items():
        assert post_raw(own, f"/hooks/before-{kind}", headers, body).status == 202
        assert post_raw(own, f"/hooks/before-{kind}", headers, body).status == 401
    deploy_at("/after")
    for kind, headers in signed.items():
        source = fresh_source()
        again = post_raw(own, f"/hooks/after-{kind}", headers, body, source=source)
        assert again.status == 401, (kind, again.status, again.text)
        assert "accepted before" in again.problem()["detail"]
        scheme = "standard" if kind == "std" else "github"
        reasons = [r["detail"]["reason"] for r in denials(own)[source]]
        assert reasons == [f"webhook {scheme}: replay"], reasons


@pytest.fixture(scope="module")
def routes(own: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> None:
    """One function per route of trigger_sweep.ROUTES, each answering the event it got."""
    root = tmp_path_factory.mktemp("sweep-routes")
    formats = {"v1": ", event_format: apigw-v1", "v2": ", event_format: apigw-v2"}
    methods = "[GET, POST, PUT, DELETE, PATCH, OPTIONS]"
    for route, (path, keyed) in ROUTES.items():
        auth = "key" if keyed else "public"
        deploy_echo(
            own,
            root,
            f"sweep-{route}",
            f"  - http: {{path: {path}, methods: {methods if keyed else '[GET, POST]'}, "
            f"auth: {auth}{formats.get(route, '')}}}\n",
        )


def _send_fn(node: LiveNode, case: FnCase, source: str) -> Reply:
    path, keyed = ROUTES[case.route]
    headers = [
        (k, v.replace("{admin}", node.admin_key) if isinstance(v, str) else v)
        for k, v in case.headers
    ]
    if keyed and not any(k == "authorization" for k, _ in headers):
        headers.insert(0, ("authorization", f"Bearer {node.admin_key}"))
    explicit = any(k == "content-length" for k, _ in headers)
    return send_raw(
        node,
        case.method,
        case.target or f"/fn{path}",
        headers,
        case.body,
        source=source,
        content_length=not explicit,
    )


def _check_event(node: LiveNode, case: FnCase, reply: Reply, source: str) -> None:
    """The event of a request taken says what was sent, and nothing the platform writes
    (the caller's address and scheme, the request id, the caller) is the caller's word."""
    answer = reply.json()
    event, path = answer["event"], ROUTES[case.route][0]
    assert node.admin_key not in json.dumps(event), f"{case}: the platform key reached the function"
    target = case.target if isinstance(case.target, str) else case.target.decode("latin-1")
    query = urlsplit(target or f"/fn{path}").query
    sent_headers = [(k, v if isinstance(v, str) else v.decode("latin-1")) for k, v in case.headers]
    own_headers = {"x-forwarded-for", "x-forwarded-proto", "authorization", "host"}
    expected_headers = {k: v for k, v in sent_headers if k not in own_headers}
    body = case.body
    if case.route in ("key", "public"):
        assert event["method"] == case.method and event["path"] == path, f"{case}: {event}"
        assert event["query"] == dict(parse_qsl(query, keep_blank_values=True)), case
        got = (
            base64.b64decode(event["body"])
            if event["is_base64_encoded"]
            else event["body"].encode()
        )
        assert got == body, case
        headers = event["headers"]
        assert event["principal"] == answer["principal"], case
    else:
        context = event["requestContext"]
        assert context["requestId"] == reply.header("x-request-id") == answer["request_id"], case
        method = event["httpMethod"] if case.route == "v1" else context["http"]["method"]
        assert method == case.method, case
        headers = event["headers"]
        got = event.get("body") or ""
        raw = base64.b64decode(got) if event["isBase64Encoded"] else got.encode()
        assert raw == body, case
    for name, value in expected_headers.items():
        assert value in headers.get(name, ""), f"{case}: {name} {headers.get(name)!r:.80}"
    forwarded = [h.strip() for h in headers["x-forwarded-for"].split(",")]
    assert forwarded[-1] == source, f"{case}: {headers['x-forwarded-for']}"
    assert headers["x-forwarded-proto"] == "https", case
    keyed = ROUTES[case.route][1]
    assert (answer["principal"] is not None) == keyed, case


def test_hostile_requests_to_http_triggers_are_refused_clearly_or_seen_as_sent(
    own: LiveNode, routes: None
) -> None:
    """Odd methods, encoded slashes, dots, NULs, bytes not UTF-8, over-long segments,
    repeated and huge parameters, duplicate and conflicting headers, bodies empty, binary,
    deep or not JSON, to each auth mode and event format: no 5xx, no traceback, a problem
    document for each refusal, and each request taken is the event its function gets."""
    start = (own.data_dir / "serve.log").stat().st_size
    wrong: list[str] = []
    unauthenticated: dict[str, FnCase] = {}
    for case in fn_cases():
        source = fresh_source()
        reply = _send_fn(own, case, source)
        if reply.status != (400 if case.expect == "http" else case.expect):
            wrong.append(f"{case}: {reply.status} {reply.text[:160]}")
            continue
        if case.expect == "http":
            continue
        if reply.status >= 400:
            if case.method != "HEAD":
                reply.problem()
            if reply.status == 401:
                unauthenticated[source] = case
            continue
        _check_event(own, case, reply, source)
    assert not wrong, "\n".join(wrong)
    audited = denials(own)
    for source, case in unauthenticated.items():  # a failed authentication is audited
        assert [r["action"] for r in audited.get(source, [])] == ["auth.denied"], case
    grown = log_since(own, start)
    assert "Traceback" not in grown, grown[grown.index("Traceback") - 300 :][:3000]


def test_a_jwt_route_takes_no_api_key_however_the_request_is_dressed(
    own: LiveNode, tmp_path: Path
) -> None:
    """Every request the sweep takes on a key route, sent to an `auth: jwt` route with the
    admin's API key instead, is a 401 audited with the reason, and its function never runs."""
    trigger = "  - http: {path: /sweep-jwt, methods: [GET, POST, PUT, DELETE, PATCH], auth: jwt}\n"
    deploy_echo(own, tmp_path, "sweep-jwt", trigger)
    refused: dict[str, FnCase] = {}
    for case in fn_cases():
        if case.route != "key" or case.expect != 200 or case.target:
            continue
        source = fresh_source()
        headers = [("authorization", f"Bearer {own.admin_key}"), *case.headers]
        reply = send_raw(own, case.method, "/fn/sweep-jwt", headers, case.body, source=source)
        assert reply.status == 401, (case, reply.status, reply.text)
        reply.problem()
        refused[source] = case
    audited = denials(own)
    for source, case in refused.items():
        reasons = [r["detail"].get("reason") for r in audited.get(source, [])]
        assert reasons == ["jwt: the credential is not a JWT"], (case, reasons)
    assert runs(own, "sweep-jwt") == 0


#: The sweep's signed webhooks: (function, path) by scheme.
SWEEP_HOOKS = {
    "standard": ("sweep-hook-standard", "/sweep-std"),
    "github": ("sweep-hook-github", "/sweep-gh"),
    "stripe": ("sweep-hook-stripe", "/sweep-stripe"),
}


@pytest.fixture(scope="module")
def hooks(own: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One echoing function per webhook scheme, each with a fresh secret; the secrets."""
    root = tmp_path_factory.mktemp("sweep-hooks")
    keys = {
        "standard": new_whsec(),
        "github": "gh-" + new_whsec(),
        "stripe": "whsec_" + secrets.token_hex(16),
    }
    for scheme, (name, path) in SWEEP_HOOKS.items():
        set_secret(own, f"{name}-key", keys[scheme])
        deploy_echo(
            own,
            root,
            name,
            f"  - webhook: {{path: {path}, scheme: {scheme}, secret: {name}-key}}\n",
        )
    return keys


def test_hostile_signatures_are_refused_audited_and_run_nothing(
    own: LiveNode, hooks: dict[str, str]
) -> None:
    """Signatures in the wrong encoding or with the wrong prefix, several values, timestamps
    in the future, the past or not numbers, ids that are not tokens, bodies signed but not
    events: each a 401 problem, audited as auth.denied with the scheme and the reason, and
    none runs its function (a signed canary sent after them is the one new run)."""
    start = (own.data_dir / "serve.log").stat().st_size
    tag = secrets.token_hex(8)
    before = {scheme: runs(own, name) for scheme, (name, _) in SWEEP_HOOKS.items()}
    listed = listings(own)
    sources: dict[str, tuple[str, str | None]] = {}
    wrong: list[str] = []
    for case in hook_cases(hooks, tag):
        source = fresh_source()
        reply = post_raw(
            own,
            "/hooks" + SWEEP_HOOKS[case.scheme][1],
            list(case.headers),
            case.body,
            source=source,
        )
        if reply.status != 401:
            wrong.append(f"{case}: {reply.status} {reply.text[:160]}")
            continue
        reply.problem()
        sources[source] = (str(case), f"webhook {case.scheme}: {case.reason}")
    assert not wrong, "\n".join(wrong)
    audited = denials(own)
    for source, (what, reason) in sources.items():
        got = [
            (r["detail"].get("reason"), r["detail"].get("trigger")) for r in audited.get(source, [])
        ]
        assert got == [(reason, "webhook")], f"{what}: {got}"
    for scheme, (name, path) in SWEEP_HOOKS.items():
        canary = json.dumps({"id": f"evt_{secrets.token_hex(8)}", "type": "canary"}).encode()
        reply = post_raw(own, "/hooks" + path, sign(hooks, scheme, canary), canary)
        assert reply.status == 202, reply.text
        assert outcome(own, reply.json()["id"])["body"]["type"] == "canary"
        assert runs(own, name) == before[scheme] + 1, f"{scheme}: a refused delivery ran"
    assert listings(own) == listed
    grown = log_since(own, start)
    assert "Traceback" not in grown, grown[grown.index("Traceback") - 300 :][:3000]


#: Bodies a signed delivery may carry, and what its event's body is then.
_BODIES: tuple[tuple[str, bytes, Any, str | None], ...] = (
    (
        "JSON",
        b'{"id": "evt_J", "type": "t", "a": [1, 2]}',
        {"id": "evt_J", "type": "t", "a": [1, 2]},
        None,
    ),
    ("text", b"id=evt_T&type=t", "id=evt_T&type=t", "text"),
    ("binary", b"\xff\xfe\x00id", base64.b64encode(b"\xff\xfe\x00id").decode(), "base64"),
    ("deep", b"[" * 200 + b"]" * 200, "[" * 200 + "]" * 200, "text"),
    (
        "lone surrogate",
        b'{"id": "evt_S", "type": "t", "s": "\\ud800"}',
        {"id": "evt_S", "type": "t", "s": "\ud800"},
        None,
    ),
    ("empty", b"", None, None),
)


def test_a_signed_delivery_is_the_event_and_nothing_an_attacker_adds_reaches_it(
    own: LiveNode, hooks: dict[str, str]
) -> None:
    """Bodies JSON, text, binary, deep, with a lone surrogate or empty, signed in each scheme
    and sent with headers an attacker adds (a platform credential, a forwarded address, a
    request id, an identity, a second Content-Type): the event holds the body as sent, the
    scheme's id and type, and only the headers the docs name, with the values sent first."""
    for scheme, (_, path) in SWEEP_HOOKS.items():
        for what, body, expected, encoding in _BODIES:
            if scheme == "stripe" and not isinstance(expected, dict):
                continue  # a Stripe event is a JSON object with an id (the malformed sweep)
            signed = sign(hooks, scheme, body)
            headers = [*signed.items(), *INJECTED]
            reply = post_raw(own, "/hooks" + path, headers, body)
            assert reply.status == 202, (scheme, what, reply.text)
            event = outcome(own, reply.json()["id"])
            assert event["body"] == expected and event.get("body_encoding") == encoding, (
                scheme,
                what,
                event,
            )
            assert set(event["headers"]) <= EVENT_HEADERS[scheme], (scheme, what, event["headers"])
            for name, value in event["headers"].items():
                assert value == signed.get(name, value), (scheme, what, name, value)
            assert event["headers"].get("content-type") == "application/json", (scheme, what)
            assert event["delivery_id"] == reply.json()["delivery_id"], (scheme, what)
            assert event["scheme"] == scheme and event["path"] == path, (scheme, what)


@pytest.fixture(scope="module")
def storage(own: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An echoing function with an s3 push trigger at /hooks/sweep-s3; its bearer token."""
    token = secrets.token_hex(16)
    set_secret(own, "sweep-store", token)
    deploy_echo(
        own,
        tmp_path_factory.mktemp("sweep-s3"),
        "sweep-s3",
        "  - s3: {source: push, path: /sweep-s3, secret: sweep-store}\n",
    )
    return token


def test_hostile_storage_pushes_are_refused_or_run_as_sent(own: LiveNode, storage: str) -> None:
    """A storage push with a missing, wrong or second token is a 401 audited with trigger s3;
    a notification that is not one (not JSON, deep, no records, a lone surrogate in a key)
    is a 400 problem that runs nothing; records with hostile keys and buckets (NUL, dots,
    1,024 bytes, encoded bytes not UTF-8, non-finite numbers, duplicate keys) run once
    each, with the record as the store sent it as their event."""
    start = (own.data_dir / "serve.log").stat().st_size
    path, good = "/hooks/sweep-s3", ("authorization", f"Bearer {storage}")
    listed, ran = listings(own), runs(own, "sweep-s3")
    refused: dict[str, str] = {}
    for what, headers in storage_token_cases(storage):
        source = fresh_source()
        reply = post_raw(own, path, list(headers), notification(record("t/" + what)), source=source)
        assert reply.status == 401, (what, reply.status, reply.text)
        reply.problem()
        refused[source] = what
    for what, body in malformed_notifications():
        reply = post_raw(own, path, [good], body)
        assert reply.status in (400, 413), (what, reply.status, reply.text)
        reply.problem()
    audited = denials(own)
    for source, what in refused.items():
        got = [(r["action"], r["detail"].get("trigger")) for r in audited.get(source, [])]
        assert got == [("auth.denied", "s3")], (what, got)
    assert runs(own, "sweep-s3") == ran and listings(own) == listed
    for what, body, records in hostile_records():
        reply = post_raw(own, path, [good, ("content-type", "application/json")], body)
        assert reply.status == 202, (what, reply.status, reply.text)
        ids = reply.json()["invocations"]
        assert len(ids) == len(records), (what, reply.json())
        for invocation, sent in zip(ids, records, strict=True):
            assert outcome(own, invocation) == {"Records": [sent]}, what
    grown = log_since(own, start)
    assert "Traceback" not in grown, grown[grown.index("Traceback") - 300 :][:3000]


def test_a_malformed_storage_push_is_audited_as_a_malformed_sqs_message_is(
    own: LiveNode, storage: str
) -> None:
    """A notification that is not one, pushed with the store's token (a leaked token's
    holder probing the parser, or a store gone wrong), is a 400 and an `input.refused`
    record naming trigger s3 and the function, one per source and window as every refusal:
    the same from SQS is audited (`trigger.event.malformed`), and a JSON body nested too
    deep on the invoke route is too. Before, nothing of it reached the audit log."""
    good = ("authorization", f"Bearer {storage}")
    sent: dict[str, str] = {}
    for what, body in malformed_notifications():
        source = fresh_source()
        reply = post_raw(own, "/hooks/sweep-s3", [good], body, source=source)
        assert reply.status in (400, 413), (what, reply.status, reply.text)
        if reply.status == 400:
            sent[source] = what
    with own.client() as c:
        records = c.get("/v1/audit", params={"n": 5000}).json()
    for source, what in sent.items():
        got = [
            (r["action"], r["target"], r["detail"].get("trigger"), r["detail"].get("function"))
            for r in records
            if r["detail"].get("client") == source
        ]
        assert got == [("input.refused", "/hooks/sweep-s3", "s3", "sweep-s3")], (what, got)


def test_a_removed_or_redeployed_hook_takes_nothing_meant_for_what_it_was(
    own: LiveNode, tmp_path: Path
) -> None:
    """Deliveries signed for a hook whose function was removed are a 404 (audited as
    webhook.unknown) and run nothing; once the function is deployed again with another
    secret, deliveries signed with the old one are a 401, and the new one's are taken."""
    old, new = new_whsec(), new_whsec()
    set_secret(own, "sweep-gone-old", old)
    set_secret(own, "sweep-gone-new", new)
    hook = "  - webhook: {path: /sweep-gone, scheme: standard, secret: SECRET}\n"
    deploy_echo(own, tmp_path, "sweep-gone", hook.replace("SECRET", "sweep-gone-old"))
    body = json.dumps({"type": "gone", "n": secrets.token_hex(6)}).encode()
    assert post_raw(own, "/hooks/sweep-gone", standard_headers(old, body), body).status == 202
    with own.client() as c:
        assert c.delete("/v1/functions/sweep-gone").status_code == 204
    source = fresh_source()
    late = post_raw(own, "/hooks/sweep-gone", standard_headers(old, body), body, source=source)
    assert late.status == 404 and "no webhook" in late.problem()["detail"]
    assert [r["action"] for r in denials(own)[source]] == ["webhook.unknown"]
    with own.client() as c:
        assert "sweep-gone" not in json.dumps(c.get("/v1/functions").json())
    deploy_echo(own, tmp_path, "sweep-gone", hook.replace("SECRET", "sweep-gone-new"))
    source = fresh_source()
    stale = post_raw(own, "/hooks/sweep-gone", standard_headers(old, body), body, source=source)
    assert stale.status == 401, stale.text
    reasons = [r["detail"]["reason"] for r in denials(own)[source]]
    assert reasons == ["webhook standard: signature"]
    fresh = post_raw(own, "/hooks/sweep-gone", standard_headers(new, body), body)
    assert fresh.status == 202, fresh.text
    assert outcome(own, fresh.json()["id"])["body"]["type"] == "gone"


def test_a_signed_body_at_the_depth_limit_is_taken_by_a_function_with_a_schema(
    own: LiveNode, tmp_path: Path
) -> None:
    """A signed body nested 128 levels deep (the most the node parses) was parsed into the
    event, one level deeper, which the function's input_schema check could then not parse:
    a 400 saying the JSON was too deep, while 127 levels ran as JSON and 129 as text. A body
    the event could not hold parsed is given as text, as any deeper one is."""
    key = new_whsec()
    set_secret(own, "sweep-deep-std", key)
    hook = "  - webhook: {path: /sweep-deep, scheme: standard, secret: sweep-deep-std}\n"
    deploy_echo(own, tmp_path, "sweep-deep", hook + "input_schema: {type: object}\n")
    for depth in (126, 127, 128, 129):
        body = b"[" * depth + b"]" * depth
        reply = post_raw(own, "/hooks/sweep-deep", sign({"standard": key}, "standard", body), body)
        assert reply.status == 202, (depth, reply.status, reply.text)
        event = outcome(own, reply.json()["id"])
        parsed = depth < 128
        assert event.get("body_encoding") == (None if parsed else "text"), (depth, event)
