"""Errors callers can act on: what a failed call tells whom, handlers refused at deploy,
one clean syntax error, and problem documents as RFC 9110 and RFC 9457 describe them."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from donjon.bundle import build_bundle
from harness import LiveNode, run_cli


def _function(root: Path, name: str, code: str, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n{extra}"
    )
    (root / "main.py").write_text(code)
    return root


@pytest.fixture(scope="module")
def failing(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A function that fails naming its secret and a path, on the invoke API and a key trigger."""
    token = "err-secret-" + secrets.token_hex(8)
    with node.client() as c:
        assert c.post("/v1/secrets/err-token", json={"value": token}).status_code == 201
        invoker = c.post("/v1/keys", json={"name": "err-invoker", "role": "invoker"}).json()
    node.deploy(
        _function(
            tmp_path_factory.mktemp("err") / "fail",
            "err-fail",
            "def handler(event, context):\n"
            "    token = context.secrets['err-token']\n"
            "    raise KeyError(f'{token} missing from /fn/conf/app.ini')\n",
            "permissions: {secrets: [err-token]}\n"
            "triggers:\n  - http: {path: /err-fail, methods: [GET], auth: key}\n",
        )
    )
    return {"token": token, "invoker": invoker["key"]}


def _failures(node: LiveNode, key: str | None) -> list[httpx.Response]:
    with node.client(key) as c:
        return [c.post("/v1/functions/err-fail/invoke", content="{}"), c.get("/fn/err-fail")]


def test_failed_call_tells_log_readers_the_error(node: LiveNode, failing: dict[str, Any]) -> None:
    """A caller allowed function:logs gets errorType, errorMessage: redacted, no trace or path."""
    for r in _failures(node, None):
        assert r.status_code == 500, r.text
        body = r.json()
        assert body["errorType"] == "KeyError"
        assert "missing from app.ini" in body["errorMessage"]
        assert failing["token"] not in r.text
        assert "/fn/" not in r.text and "Traceback" not in r.text and "line " not in r.text
        assert body["request_id"] == r.headers["x-request-id"]


def test_failed_call_tells_plain_invokers_only_the_request_id(
    node: LiveNode, failing: dict[str, Any]
) -> None:
    """A caller who may invoke but not read logs learns that it failed, and the request id."""
    for r in _failures(node, failing["invoker"]):
        assert r.status_code == 500, r.text
        body = r.json()
        assert "errorType" not in body and "errorMessage" not in body
        assert "KeyError" not in r.text and "app.ini" not in r.text
        assert body["request_id"] in body["detail"]


def _deploy(node: LiveNode, directory: Path) -> httpx.Response:
    _, archive = build_bundle(directory)
    with node.client() as c:
        return c.post("/v1/functions", content=archive)


@pytest.mark.parametrize(
    ("code", "said"),
    [
        ("def other(event, context):\n    return 1\n", "main defines no 'handler'"),
        ("handler = 42\n", "main.handler is a int, not a function"),
        ("def handler(event):\n    return 1\n", "main.handler takes 1 positional argument"),
        ("def handler(a, b, c):\n    return 1\n", "main.handler needs 3 positional arguments"),
        (
            "class H:\n    def __call__(self, event):\n        return 1\nhandler = H()\n",
            "main.handler takes 1 positional argument",
        ),
    ],
    ids=["missing", "not-callable", "one-argument", "three-arguments", "callable-object"],
)
def test_unusable_handler_fails_the_deploy(
    node: LiveNode, tmp_path: Path, code: str, said: str
) -> None:
    """A handler that is missing, not callable or of the wrong arity fails the deploy, saying so."""
    r = _deploy(node, _function(tmp_path / "bad", "err-handler", code))
    assert r.status_code == 422, r.text
    assert said in r.json()["detail"]
    assert "Traceback" not in r.text and "/fn/" not in r.text
    with node.client() as c:
        assert c.get("/v1/functions/err-handler").status_code == 404


def test_handlers_of_every_callable_shape_deploy(node: LiveNode, tmp_path: Path) -> None:
    """Defaults, *args and callable objects taking (event, context) are handlers."""
    code = (
        "def handler(event, context=None, *rest):\n    return 'ok'\n"
        "class H:\n    def __call__(self, event, context):\n        return 'obj'\n"
        "obj = H()\n"
    )
    fn = _function(tmp_path / "ok", "err-handler-ok", code)
    assert _deploy(node, fn).status_code == 201
    assert node.invoke("err-handler-ok", {}).json() == "ok"


def test_syntax_error_is_reported_once_cleanly(node: LiveNode, tmp_path: Path) -> None:
    """`donjon deploy` of code that does not compile says so once: no compiler dump, no trace."""
    fn = _function(tmp_path / "syntax", "err-syntax", "def handler(event, context)\n    return 1\n")
    done = run_cli(node.env(), "deploy", str(fn), check=False)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert out.count("SyntaxError") == 1, out
    assert "main.py, line 1" in out
    assert "Error compiling" not in out and "Traceback" not in out and "/tmp/" not in out


def test_401_carries_www_authenticate(node: LiveNode) -> None:
    """A missing or bad bearer credential gets a challenge naming the Bearer scheme."""
    for key in ("", "dj_0000000000000000_" + "x" * 43):
        with node.client(key) as c:
            r = c.get("/v1/functions")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer realm="donjon"'


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/functions/err-fail/invoke", "POST"),  # a route of its own
        ("PUT", "/v1/keys", "POST, GET, HEAD"),  # a path shared by admin routes
        ("GET", "/2015-03-31/functions/x/invocations", "POST"),
    ],
)
def test_405_carries_allow(node: LiveNode, method: str, path: str, allow: str) -> None:
    """A method the resource does not take is a 405 naming those it does."""
    with node.client() as c:
        r = c.request(method, path)
    assert r.status_code == 405, r.text
    assert set(r.headers["allow"].split(", ")) == set(allow.split(", "))
    if "HEAD" in allow:  # each method it names is one it takes
        with node.client() as c:
            assert c.head(path).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "key", "status", "title"),
    [
        ("GET", "/nothing-here", None, 404, "Not Found"),
        ("DELETE", "/v1/functions/err-nope", None, 404, "Not Found"),
        ("PUT", "/v1/keys", None, 405, "Method Not Allowed"),
        ("GET", "/v1/functions", "", 401, "Unauthorized"),
        ("POST", "/v1/functions/err-nope/invoke", None, 404, "Not Found"),
        ("POST", "/v1/keys", None, 400, "Bad Request"),
    ],
)
def test_every_problem_carries_the_request_id_and_the_status_phrase(
    node: LiveNode, method: str, path: str, key: str | None, status: int, title: str
) -> None:
    """Problem documents (about:blank) are titled with the status phrase and carry a request id."""
    with node.client(key) as c:
        r = c.request(method, path, content=b"[]" if method == "POST" else None)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = json.loads(r.content)
    assert body["type"] == "about:blank" and body["title"] == title
    assert len(body["request_id"]) == 20 and body["request_id"] == r.headers["x-request-id"]
