"""Tenants share the platform's origin: a function's response must not act on that origin.

Cookies for other paths or the whole host, HSTS switched off, CORS with
credentials, Alt-Svc, Clear-Site-Data, NEL and script in HTML would each reach
every tenant and the API. Header values the server cannot send are the
function's failure (502, audited as such), not a 500 or a dropped connection
audited as ok. `sec-reply` is the hostile tenant.
"""

from __future__ import annotations

import httpx
import pytest

from harness import LiveNode
from sec_support import Ready, assert_problem, audit_records

ORIGIN_WIDE = {
    "cookie-root": "set-cookie",
    "cookie-domain": "set-cookie",
    "cookie-other-path": "set-cookie",
    "cookie-prefix-sibling": "set-cookie",
    "cookie-host-prefix": "set-cookie",
    "hsts": "strict-transport-security",
    "cors-credentials": "access-control-allow-credentials",
    "alt-svc": "alt-svc",
    "clear-site-data": "clear-site-data",
    "nel": "nel",
    "service-worker": "service-worker-allowed",
    "accept-ch": "accept-ch",
    "critical-ch": "critical-ch",
    "set-login": "set-login",
    "session-registration": "secure-session-registration",
    "negotiate": "www-authenticate",
    "ntlm": "www-authenticate",
    "basic": "www-authenticate",
    "digest": "www-authenticate",
}


@pytest.fixture(autouse=True)
def _function_started(started: Ready) -> None:
    """Each attack here meets sec-reply from a cold start and from a warm one (invariant 4)."""
    started("sec-reply")


def _get(node: LiveNode, case: str, path: str = "/fn/sec-reply") -> httpx.Response:
    with node.client("") as c:
        return c.get(path, params={"case": case})


@pytest.mark.parametrize("case", sorted(ORIGIN_WIDE))
def test_function_cannot_set_origin_wide_headers(node: LiveNode, case: str) -> None:
    """A header acting on the whole origin does not leave the gateway; the call is audited."""
    r = _get(node, case)
    assert r.status_code == 200, r.text
    assert ORIGIN_WIDE[case] not in r.headers, r.headers
    assert "report-to" not in r.headers
    assert "sec-session-registration" not in r.headers
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["outcome"] == "ok"
    assert ORIGIN_WIDE[case] in record["detail"]["refused_headers"]


def test_function_may_still_ask_for_bearer_credentials(node: LiveNode) -> None:
    """A challenge the browser never answers on its own (Bearer) is the function's to send."""
    with node.client("") as c:
        body = {"respond": {"statusCode": 401, "headers": {"www-authenticate": "Bearer"}}}
        r = c.post("/fn/sec-http/public", json=body)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_function_cookie_without_path_is_confined_to_its_route(node: LiveNode) -> None:
    """A cookie with no Path gets the function's own route as its path, not the default."""
    cookie = _get(node, "cookie-no-path").headers["set-cookie"]
    assert cookie.startswith("pref=1")
    assert "path=/fn/sec-reply" in cookie.lower().replace(" ", "")


def test_function_cookie_below_its_route_is_kept(node: LiveNode) -> None:
    """A function may still set a cookie for a path under its own route."""
    cookie = _get(node, "cookie-own-path").headers["set-cookie"]
    assert cookie == "pref=1; Path=/fn/sec-reply/sub; Secure"


def test_function_html_cannot_run_script_on_the_platform_origin(node: LiveNode) -> None:
    """text/html from a function is served under a CSP that sandboxes it and allows no script."""
    r = _get(node, "html-script")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    policies = r.headers.get_list("content-security-policy")
    assert any("sandbox" in p and "default-src 'none'" in p for p in policies), policies
    assert r.headers["x-content-type-options"] == "nosniff"


def test_function_cannot_loosen_the_platform_csp(node: LiveNode) -> None:
    """A function's own permissive CSP does not replace the platform's (every CSP applies)."""
    policies = _get(node, "csp-loose").headers.get_list("content-security-policy")
    assert any("sandbox" in p and "default-src 'none'" in p for p in policies), policies


def test_function_cannot_turn_content_sniffing_back_on(node: LiveNode) -> None:
    """X-Content-Type-Options stays nosniff whatever the function says."""
    assert _get(node, "sniff").headers.get_list("x-content-type-options") == ["nosniff"]


def test_plain_json_results_get_the_safe_defaults(node: LiveNode) -> None:
    """A result without statusCode is served as JSON with nosniff and the CSP too."""
    r = _get(node, "control-output")
    assert r.status_code == 200
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in r.headers


@pytest.mark.parametrize(
    "case",
    [
        "non-latin1",
        "control-char",
        "delete-char",
        "c1-control",
        "crlf",
        "bad-name",
        "surrogate-body",
        "204-body",
        "205-body",
        "304-body",
    ],
)
def test_unsendable_response_is_a_502_audited_as_a_failure(node: LiveNode, case: str) -> None:
    """Header names/values (or a body) the server cannot send get a 502 and a failed record."""
    r = _get(node, case)
    assert_problem(r, 502)
    (record,) = audit_records(node, r.headers["x-request-id"])
    assert record["action"] == "function.invoke"
    assert record["outcome"] == "BadFunctionResponse", record
