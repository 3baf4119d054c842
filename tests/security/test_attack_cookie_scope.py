"""A function's cookie must stay on its own route, as the browser will read it.

A browser ignores a cookie attribute whose value is longer than 1024 bytes (RFC 6265bis
5.6; Chrome and Firefox both do) and then scopes the cookie to the default path: the
directory of the request's path. For a function at /fn/x that is /fn, so a Path the
gateway checked but the browser drops put the cookie on every tenant's routes. So did a
Path the gateway found by trimming more than a browser trims (spaces and tabs only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from harness import LiveNode

#: The longest attribute value a browser keeps (RFC 6265bis 5.6).
MAX_ATTRIBUTE = 1024

LONG_ROUTE_HANDLER = """
def handler(event, context):
    return {"statusCode": 200, "headers": {"set-cookie": "sid=planted"}, "body": "ok"}
"""


def _respond(node: LiveNode, respond: dict[str, Any]) -> httpx.Response:
    with node.client(key="") as c:
        return c.post("/fn/sec-http/public", content=json.dumps({"respond": respond}))


def test_cookie_path_too_long_for_the_browser_is_refused(node: LiveNode) -> None:
    """A Path below the route but over 1024 bytes (the browser would use /fn) is refused."""
    path = "/fn/sec-http/public/" + "a" * MAX_ATTRIBUTE
    r = _respond(
        node,
        {"statusCode": 200, "headers": {"set-cookie": f"sid=planted; Path={path}"}, "body": "x"},
    )
    assert r.status_code == 200, r.text
    assert r.headers.get_list("set-cookie") == []


def test_cookie_path_of_the_longest_kept_length_is_kept(node: LiveNode) -> None:
    """A Path of exactly 1024 bytes below the route is one the browser keeps: it goes out."""
    path = "/fn/sec-http/public/"
    path += "a" * (MAX_ATTRIBUTE - len(path))
    cookie = f"sid=1; Path={path}"
    r = _respond(node, {"statusCode": 200, "headers": {"set-cookie": cookie}, "body": "x"})
    assert r.headers.get_list("set-cookie") == [cookie]


def test_cookie_on_a_route_too_long_for_a_path_is_refused(node: LiveNode, tmp_path: Path) -> None:
    """A cookie with no Path on a route longer than a browser keeps as a Path is refused:
    the Path the gateway adds would be dropped, leaving the route's parent (a sibling's)."""
    route = "/cookie-long/" + "r" * MAX_ATTRIBUTE
    fn = tmp_path / "cookie-long"
    fn.mkdir()
    (fn / "main.py").write_text(LONG_ROUTE_HANDLER)
    (fn / "donjon.yaml").write_text(
        "name: cookie-long\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
        'limits: {rate: "600/minute"}\n'
        f"triggers:\n  - http: {{path: {route}, methods: [GET], auth: public}}\n"
    )
    node.deploy(fn)
    with node.client(key="") as c:
        r = c.get(f"/fn{route}")
    assert r.status_code == 200, r.text
    assert r.headers.get_list("set-cookie") == []


def test_cookie_path_a_browser_does_not_read_as_one_is_refused(node: LiveNode) -> None:
    """A no-break space (U+00A0, sendable Latin-1) around `Path` or its value is no
    whitespace to a browser, which trims only spaces and tabs: `Path\\xa0=` is an unknown
    attribute and `Path=\\xa0/...` a value not starting with "/", either way the default
    path (/fn). A cookie with a character outside ASCII is refused."""
    for cookie in (
        "sid=planted; Path\xa0=/fn/sec-http/public",
        "sid=planted; Path=\xa0/fn/sec-http/public",
        "sid=planted;\xa0Path=/fn/sec-http/public",
    ):
        r = _respond(node, {"statusCode": 200, "headers": {"set-cookie": cookie}, "body": "x"})
        assert r.status_code == 200, r.text
        assert r.headers.get_list("set-cookie") == [], cookie
