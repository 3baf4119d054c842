"""Role documents whose statements look right and match nothing: a resource pattern with a
line end after it was taken (the pattern's `$` matches before a final newline), so a deny
on `billing-*\n` was stored and denied nothing."""

from __future__ import annotations

import pytest

from harness import LiveNode
from sec_support import assert_problem


@pytest.mark.parametrize("pattern", ["*\n", "sec-billing-*\n", "probe\n"])
def test_a_resource_with_a_line_end_is_refused_and_changes_nothing(
    node: LiveNode, pattern: str
) -> None:
    """A deny whose resource ends in a newline would deny nothing: 400, no role stored."""
    doc = {
        "name": "sec-newline",
        "statements": [
            {"effect": "allow", "actions": ["function:invoke"], "resources": ["*"]},
            {"effect": "deny", "actions": ["function:invoke"], "resources": [pattern]},
        ],
    }
    with node.client() as c:
        assert_problem(c.post("/v1/roles", json=doc), 400)
        assert "sec-newline" not in [r["name"] for r in c.get("/v1/roles").json()]
