"""Invariant 3, the supervisor runs no function code: a standard-library module a bundle
merely names is not imported (and so not run) by the supervisor."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import LiveNode
from sec_support import Ready

_NAMES_A_MAIN = """\
def handler(event, context):
    if event.get("never"):
        import unittest.__main__  # noqa: F401  (never runs: it would call unittest.main())
    return {"ok": True}
"""


@pytest.mark.parametrize("mode", ["invocation", "warm"])
def test_bundle_that_names_unittest_main_deploys_and_serves(
    node: LiveNode, tmp_path: Path, mode: str, started: Ready
) -> None:
    """A handler naming `unittest.__main__` in a dead branch deploys: the supervisor runs none."""
    fn = f"sec-preload-main-{mode}"
    (tmp_path / "main.py").write_text(_NAMES_A_MAIN)
    (tmp_path / "donjon.yaml").write_text(
        f"name: {fn}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\nisolation: {mode}\n"
    )
    try:
        node.deploy(tmp_path)  # asserts 201
        started(fn, just_deployed=True)
        r = node.invoke(fn, {})
        assert r.status_code == 200, r.text
        assert r.json() == {"ok": True}
    finally:
        with node.client() as c:
            c.delete(f"/v1/functions/{fn}")
