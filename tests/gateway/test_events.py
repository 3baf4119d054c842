"""JSON pointers for the field an input_schema refuses (RFC 6901)."""

from __future__ import annotations

import pytest

from donjon.gateway.events import json_pointer


@pytest.mark.parametrize(
    ("path", "pointer"),
    [
        ([], ""),
        (["url"], "/url"),
        (["opts", 0, "depth"], "/opts/0/depth"),
        (["a/b", "m~n"], "/a~1b/m~0n"),
    ],
)
def test_paths_become_json_pointers(path: list[object], pointer: str) -> None:
    """Keys and indexes are joined with '/', with '~' and '/' escaped as ~0 and ~1."""
    assert json_pointer(path) == pointer
