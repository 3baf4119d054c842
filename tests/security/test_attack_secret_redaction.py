"""Redaction under attack, second round: forms of a value the first round missed, and the
redactor's own time as a lever on the node.

- A value holding a quote (or a backslash) and a non-ASCII letter, printed as JSON with
  `ensure_ascii=False` (what structured loggers do) or as bytes (`print(v.encode())`),
  was stored in the clear: the redactor knew the value, its `repr` and its ASCII JSON
  form only.
- The redactor runs on the node's event loop. Its search for a piece of a value a cut
  left at an edge of a text tried every place the value's first (last) 6 characters
  occur there, copying and comparing the rest each time: quadratic in the value's
  length. A developer who set 30 secrets of 64 KiB that repeat one letter, granted them
  to one function and printed 64 KiB of that letter stalled the whole node (every
  tenant's requests, /healthz included) for about 3 s per call (0.3 s with the four a
  call now carries, below).
- Each call also sends every granted value to the sandbox and builds their redactor on
  the event loop: 150 granted secrets of 64 KiB stalled the node about 0.4 s per call.
  A call now carries at most MAX_GRANTED characters of values (four of the largest).

The redactor's search is counted, not timed, in tests/vault/test_redact.py.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from donjon.bundle import build_bundle
from donjon.vault.service import MAX_GRANTED
from harness import LiveNode

#: The vault's largest value.
LONG = 64 * 1024


def _deploy(node: LiveNode, root: Path) -> None:
    _, archive = build_bundle(root)
    with node.client() as c:
        r = c.post("/v1/functions", content=archive, params={"unsafe_skip_scan": "true"})
    assert r.status_code == 201, r.text


def _function(tmp: Path, name: str, code: str, granted: list[str]) -> Path:
    root = tmp / name
    root.mkdir()
    (root / "main.py").write_text(code)
    (root / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\npermissions: {{secrets: [{', '.join(granted)}]}}\n"
    )
    return root


def test_cannot_leak_a_secret_by_printing_it_as_unescaped_json_or_bytes(
    node: LiveNode, tmp_path: Path
) -> None:
    """`json.dumps(..., ensure_ascii=False)` and a print of the value's UTF-8 bytes are
    redacted like its plain, `repr` and ASCII JSON forms."""
    value = f'Pässw"rd\\{secrets.token_hex(8)}'
    with node.client() as c:
        assert c.post("/v1/secrets/unescaped-s", json={"value": value}).status_code == 201
    code = (
        "import json\n"
        "def handler(event, context):\n"
        "    v = context.secrets['unescaped-s']\n"
        "    print(json.dumps({'v': v}, ensure_ascii=False))\n"
        "    print(v.encode())\n"
        "    return {'ok': True}\n"
    )
    _deploy(node, _function(tmp_path, "unescaped", code, ["unescaped-s"]))
    assert node.invoke("unescaped", {}).status_code == 200
    with node.client() as c:
        logs = c.get("/v1/functions/unescaped/logs").json()
    (entry,) = logs
    tail = value.rsplit("\\", 1)[1]
    assert tail not in entry["output"], entry["output"]
    assert entry["output"].count("[secret:unescaped-s]") == 2


def test_a_function_granted_more_than_a_call_carries_is_refused_clearly(
    node: LiveNode, tmp_path: Path
) -> None:
    """Granted values over MAX_GRANTED characters together: the deploy is refused, naming
    the bound; a function whose grants fit is served; and a rotation that would take a
    deployed function's grants past it is refused, the function served on."""
    size = LONG - 1
    count = MAX_GRANTED // size + 1
    names = [f"bulk-{i}" for i in range(count)]
    grown = [f"grows-{i}" for i in range(count)]
    with node.client() as c:
        for name in names:
            value = secrets.token_hex(size)[:size]
            assert c.post(f"/v1/secrets/{name}", json={"value": value}).status_code == 201
        for name in grown:
            assert c.post(f"/v1/secrets/{name}", json={"value": "small"}).status_code == 201
    code = "def handler(event, context):\n    return {'n': len(context.secrets)}\n"
    _, archive = build_bundle(_function(tmp_path, "bulk", code, names))
    with node.client() as c:
        refused = c.post("/v1/functions", content=archive, params={"unsafe_skip_scan": "true"})
        assert refused.status_code == 422, refused.text
        assert f"over the {MAX_GRANTED} one call carries" in refused.json()["detail"]
        assert c.get("/v1/functions/bulk").status_code == 404
    _deploy(node, _function(tmp_path, "bulk-fits", code, names[:-1]))
    served = node.invoke("bulk-fits", {})
    assert served.status_code == 200 and served.json() == {"n": count - 1}

    # A rotation that would take a deployed function's grants past the bound is refused
    # (before, it was made, and every call of the function was refused from then on).
    _deploy(node, _function(tmp_path, "grows", code, grown))
    assert node.invoke("grows", {}).status_code == 200
    statuses = []
    with node.client() as c:
        for name in grown:
            value = secrets.token_hex(size)[:size]
            rotated = c.post(f"/v1/secrets/{name}/versions", json={"value": value})
            statuses.append(rotated.status_code)
            if rotated.status_code == 422:
                break
        versions = {s["name"]: s for s in c.get("/v1/secrets").json()}
    assert statuses[:-1] == [201] * (len(statuses) - 1) and statuses[-1] == 422, statuses
    assert "grows" in rotated.json()["detail"], rotated.text
    assert f"past the {MAX_GRANTED} characters one call carries" in rotated.json()["detail"]
    assert versions[grown[len(statuses) - 1]]["latest"] == 1  # the refused one: unchanged
    served = node.invoke("grows", {})
    assert served.status_code == 200 and served.json() == {"n": count}


def test_a_value_a_warm_worker_kept_does_not_outlive_its_rotation_in_clear(
    node: LiveNode, tmp_path: Path
) -> None:
    """A warm handler keeping its secret in a global printed, after a rotation, the old value,
    which the call's redactor (knowing the new one only) left in clear in the log. A
    change of a granted secret now starts the function's warm sandboxes afresh."""
    old, new = secrets.token_hex(16), secrets.token_hex(16)
    with node.client() as c:
        assert c.post("/v1/secrets/kept-s", json={"value": old}).status_code == 201
    code = (
        "KEPT = None\n"
        "def handler(event, context):\n"
        "    global KEPT\n"
        "    fresh = KEPT is None\n"
        "    if fresh:\n"
        "        KEPT = context.secrets['kept-s']\n"
        "    print('kept', KEPT)\n"
        "    return {'fresh': fresh}\n"
    )
    root = _function(tmp_path, "keeps", code, ["kept-s"])
    manifest = root / "donjon.yaml"
    manifest.write_text(manifest.read_text() + "isolation: warm\n")
    _deploy(node, root)
    assert node.invoke("keeps", {}).json() == {"fresh": True}
    assert node.invoke("keeps", {}).json() == {"fresh": False}  # warm: the same worker
    with node.client() as c:
        r = c.post("/v1/secrets/kept-s/versions", json={"value": new})
        assert r.status_code == 201, r.text
    assert node.invoke("keeps", {}).json() == {"fresh": True}  # a new worker
    with node.client() as c:
        logs = c.get("/v1/functions/keeps/logs").json()
    text = "".join(entry["output"] for entry in logs)
    assert old not in text and new not in text, text
    assert text.count("[secret:kept-s]") == 3


def test_cannot_leak_a_secret_as_the_name_of_the_exception_raised(
    node: LiveNode, tmp_path: Path
) -> None:
    """An exception class named by the value: the answer's errorType was taken from the
    error line before it was redacted, and carried the value in clear (errorMessage and
    the logs were redacted)."""
    value = f"tok_{secrets.token_hex(12)}"
    with node.client() as c:
        assert c.post("/v1/secrets/as-type-s", json={"value": value}).status_code == 201
    code = (
        "def handler(event, context):\n"
        "    raise type(context.secrets['as-type-s'], (Exception,), {})('failed')\n"
    )
    _deploy(node, _function(tmp_path, "as-type", code, ["as-type-s"]))
    failed = node.invoke("as-type", {})
    assert failed.status_code == 500, failed.text
    assert value not in failed.text
    assert failed.json()["errorType"] == "[secret:as-type-s]"
