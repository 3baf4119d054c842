"""Secret values must appear nowhere but in the response of the function that returns one.

Each function below is granted its own secret (distinctive random values) and
tries to leak it another way; each runs in both isolation modes (invariant 4).
Then every answer, log, audit record, the server's output and every byte of the
data dir are searched for every value.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from donjon.bundle import build_bundle
from harness import LiveNode
from sec_support import Ready

LEAKERS = {
    # prints the value every way a handler might: print, context.log, repr, JSON, stderr
    "leak-print": (
        "import json, sys\n"
        "def handler(event, context):\n"
        "    v = context.secrets['leak-print-s']\n"
        "    print('value:', v)\n"
        "    context.log('logged', v)\n"
        "    print(repr(v), json.dumps({'v': v}))\n"
        "    sys.stderr.write(v + '\\n')\n"
        "    return {'ok': True}\n"
    ),
    # raises with the value in its message (the error line and the trace's last line)
    "leak-raise": (
        "def handler(event, context):\n"
        "    v = context.secrets['leak-raise-s']\n"
        "    raise ValueError('could not connect with ' + v)\n"
    ),
    # raises with a message so long that the runtime's caps cut the value in two: the
    # error line (its first 2,000 characters) ends with the first half, the trace (its
    # last 8,000) begins with the rest, and neither holds the whole value
    "leak-cut": (
        "def handler(event, context):\n"
        "    v = context.secrets['leak-cut-s']\n"
        "    half = len(v) // 2\n"
        "    before = 2000 - len('ValueError: ') - half\n"
        "    after = 8000 - len('\\n') - (len(v) - half)\n"
        "    raise ValueError('e' * before + v + 't' * after)\n"
    ),
    # chooses to return it: the one place a value may appear
    "leak-return": (
        "def handler(event, context):\n    return {'value': context.secrets['leak-return-s']}\n"
    ),
}


@pytest.fixture(scope="module")
def values(
    node: LiveNode, tmp_path_factory: pytest.TempPathFactory, sources: dict[str, Path]
) -> dict[str, str]:
    """Distinctive values set in the vault, and the leakers deployed (invocation and warm)."""
    out = {}
    with node.client() as c:
        for fn in LEAKERS:
            value = f"DJLEAK{secrets.token_hex(10)}"
            assert c.post(f"/v1/secrets/{fn}-s", json={"value": value}).status_code == 201
            out[fn] = value
    for fn, code in LEAKERS.items():
        for isolation in ("invocation", "warm"):
            name = fn if isolation == "invocation" else f"{fn}-warm"
            root = tmp_path_factory.mktemp(name)
            (root / "donjon.yaml").write_text(
                f"name: {name}\nhandler: main.handler\nisolation: {isolation}\n"
                f"permissions: {{secrets: [{fn}-s]}}\n"
            )
            (root / "main.py").write_text(code)
            _deploy(node, root, skip_scan=fn == "leak-return")
            sources[name] = root
    return out


def _deploy(node: LiveNode, root: Path, *, skip_scan: bool) -> None:
    """Deploy `root`; a function returning its secret is refused by the deploy gate
    (DJ-PY-015) unless an admin skips the scan, as here, to test the runtime alone."""
    _, archive = build_bundle(root)
    with node.client() as c:
        r = c.post("/v1/functions", content=archive)
        if skip_scan:
            assert r.status_code == 422 and "DJ-PY-015" in r.text
            r = c.post("/v1/functions", content=archive, params={"unsafe_skip_scan": "true"})
    assert r.status_code == 201, r.text


def _leaks(text: str | bytes, values: dict[str, str]) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [fn for fn, v in values.items() if v.encode() in data]


def _names(fn: str) -> tuple[str, str]:
    return fn, f"{fn}-warm"


def test_cannot_leak_a_secret_by_printing_it(
    node: LiveNode, values: dict[str, str], started: Ready
) -> None:
    """What a function prints is stored with its secret's value replaced by [secret:NAME]."""
    with node.client() as c:
        for name in _names("leak-print"):
            r = node.invoke(started(name), {})
            assert r.status_code == 200 and _leaks(r.text, values) == []
            logs = c.get(f"/v1/functions/{name}/logs")
            assert logs.status_code == 200 and _leaks(logs.text, values) == []
            assert "[secret:leak-print-s]" in logs.text


def test_cannot_leak_a_secret_through_an_error(
    node: LiveNode, values: dict[str, str], started: Ready
) -> None:
    """An exception carrying the value: the answer, error line and trace are all redacted."""
    with node.client() as c:
        for name in _names("leak-raise"):
            r = node.invoke(started(name), {})
            assert r.status_code == 500 and _leaks(r.text, values) == []
            logs = c.get(f"/v1/functions/{name}/logs")
            assert _leaks(logs.text, values) == []
            assert "could not connect with [secret:leak-raise-s]" in logs.text


def test_cannot_leak_a_secret_the_runtimes_caps_cut_in_two(
    node: LiveNode, values: dict[str, str], started: Ready
) -> None:
    """A value cut by the error line's cap and the trace's: neither half is stored or answered."""
    value = values["leak-cut"]
    halves = (value[: len(value) // 2], value[len(value) // 2 :])
    with node.client() as c:
        for name in _names("leak-cut"):
            r = node.invoke(started(name), {})
            logs = c.get(f"/v1/functions/{name}/logs")
            assert r.status_code == 500 and logs.status_code == 200
            assert [h for h in halves if h in r.text or h in logs.text] == []
            assert logs.text.count("[secret:leak-cut-s]") >= 2


def test_returned_secret_is_the_functions_choice(
    node: LiveNode, values: dict[str, str], started: Ready
) -> None:
    """A function returning its own secret gets it to its caller, and only there."""
    for name in _names("leak-return"):
        r = node.invoke(started(name), {})
        assert r.status_code == 200 and r.json() == {"value": values["leak-return"]}


def test_no_value_anywhere_else(node: LiveNode, values: dict[str, str]) -> None:
    """After every leaker ran: no value in the API's answers, the audit, the server's
    output or any byte of any file of the data dir (the database, its WAL, keys, logs)."""
    for fn in LEAKERS:
        for name in _names(fn):
            node.invoke(name, {})
    with node.client() as c:
        answers = [
            c.get("/v1/audit", params={"n": 2000}),
            c.get("/v1/secrets"),
            c.get("/v1/functions"),
            *(c.get(f"/v1/functions/{n}/logs") for fn in LEAKERS for n in _names(fn)),
            *(c.get(f"/v1/functions/{n}") for fn in LEAKERS for n in _names(fn)),
            c.get("/metrics"),
        ]
    for answer in answers:
        assert _leaks(answer.text, values) == [], answer.url
    found = []
    files = [p for p in Path(node.data_dir).rglob("*") if p.is_file()]
    assert any(p.name == "donjon.db" for p in files) and any(p.name == "serve.log" for p in files)
    for path in files:
        hits = _leaks(path.read_bytes(), values)
        if hits:
            found.append(f"{path}: {hits}")
    assert found == []
