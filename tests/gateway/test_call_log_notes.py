"""The node's own lines in a call's log (`[donjon] ...`) cannot be printed by the function:
a line it printed that begins so is stored escaped (`\\[donjon] ...`)."""

from __future__ import annotations

from pathlib import Path

from async_support import bundle
from donjon.gateway.calllog import printed
from harness import LiveNode

FAKES = (
    "def handler(event, context):\n"
    '    print("[donjon] headers refused on the platform\'s origin: none")\n'
    "    print('mine [donjon] in a line is mine')\n"
    "    print('[donjon] the call was audited')\n"
    "    return {'ok': True}\n"
)


def test_printed_escapes_the_lines_that_begin_as_the_nodes() -> None:
    assert printed("") == ""
    assert printed("plain\n") == "plain\n"
    escaped = "\\[donjon] a\nb [donjon] c\n\\[donjon] d"
    assert printed("[donjon] a\nb [donjon] c\n[donjon] d") == escaped


def test_a_function_cannot_print_the_nodes_own_lines(node: LiveNode, tmp_path: Path) -> None:
    node.deploy(bundle(tmp_path, "fakes-notes", FAKES))
    assert node.invoke("fakes-notes", {}).status_code == 200
    with node.client() as c:
        (entry,) = c.get("/v1/functions/fakes-notes/logs").json()
    lines = entry["output"].splitlines()
    assert lines == [
        "\\[donjon] headers refused on the platform's origin: none",
        "mine [donjon] in a line is mine",
        "\\[donjon] the call was audited",
    ], lines
