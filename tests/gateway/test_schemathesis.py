"""Schemathesis against a throwaway node: no 5xx and no answer the OpenAPI document does not
describe, on every operation, within a bounded number of cases.

The node is its own (not the session's): the run deletes, rotates and rekeys what it can.
It serves one function that never fails whatever its event (named as the document's
examples name functions, `hello`), so a 5xx can only be the platform's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import LiveNode, start_node

HERE = Path(__file__).parent
#: Cases per operation and phase: the whole run stays within about two minutes here.
MAX_EXAMPLES = 15
SEED = 20261101  # fixed, so a failure reproduces (`st replay` ids are in the output)

_MANIFEST = """\
name: hello
handler: main.handler
memory_mb: 64
timeout_s: 30
triggers:
  - http: {path: /hello, methods: [GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS], auth: key}
"""
_HANDLER = '''\
"""Answers every event, so that any 5xx the run sees is the platform's."""


def handler(event, context):
    return {"ok": True}
'''


@pytest.fixture(scope="module")
def throwaway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = start_node(tmp_path_factory.mktemp("schemathesis-node"))
    try:
        fn = tmp_path_factory.mktemp("hello")
        (fn / "donjon.yaml").write_text(_MANIFEST)
        (fn / "main.py").write_text(_HANDLER)
        live.deploy(fn)
        yield live
    finally:
        live.stop()


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    throwaway: LiveNode, tmp_path: Path
) -> None:
    """Every operation, every check but those schemathesis.toml turns off (with reasons)."""
    with throwaway.client() as c:
        operations = sum(
            1
            for item in c.get("/openapi.json").json()["paths"].values()
            for method in item
            if method != "parameters"
        )
    env = {**os.environ, "PYTHONPATH": str(HERE), "NO_COLOR": "1"}
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{throwaway.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {throwaway.admin_key}",
            "--tls-verify",
            throwaway.cert,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",  # one: a deterministic order (a removal never races a call)
            "1",
            "--request-timeout",
            "60",
            "--generation-database",
            "none",
            "--no-color",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-20_000:]
    # Every operation was tested, but GET /openapi.json: the schema's own URL, which
    # schemathesis leaves out of a run it loaded from there.
    selected = re.search(r"Selected:\s+(\d+)/(\d+)", out)
    tested = re.search(r"Tested:\s+(\d+)", out)
    assert selected is not None and tested is not None, out[-5_000:]
    assert int(tested.group(1)) == int(selected.group(1)) == int(selected.group(2)), out[-5_000:]
    assert int(tested.group(1)) >= operations - 1, (operations, out[-5_000:])
    # The run's own credential lived to the end: no operation was only ever refused.
    with throwaway.client() as c:
        keys = c.get("/v1/keys")
    assert keys.status_code == 200, keys.text
    assert json.loads(keys.text), "the node lost its keys"
