"""Fixtures for the attacks: the hostile functions, also deployed in warm mode, and the two
starts every attack that reaches a sandbox is run on (invariant 4).

`start` is `cold` (the attack's first call is the first call of a sandbox started just
for it: a new version of the function, deployed by the fixture) or `warm` (the sandbox, and
for `isolation: warm` its worker, has already served a call). A test asks for it through
`fn` (parametrized indirectly with function names: sec_support's PROBES, ATTACKERS and
`in_both_modes`) or, when it attacks with several functions or deploys its own, through
`started`.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest

from donjon.bundle import build_bundle
from harness import FUNCTIONS, LiveNode
from sec_support import STARTS, Ready

#: What a warm start's first call sends, by function, and the status it gets (default
#: {"op": "echo"} and 200). It must leave nothing the attack could trip on: no state, no
#: denial (only the first denial of a window is written at once: the attack's own would
#: only be counted). Some can only fail: the call is served all the same.
_HARMLESS: dict[str, tuple[Any, int]] = {
    "inv-granted": ({"to": "inv-target", "event": {}}, 200),
    "inv-ungranted": ({}, 500),  # no "to": a KeyError before any context.invoke
    "inv-ungranted2": ({}, 500),
    "inv-slow": ({"sleep": 0}, 200),
    "leak-raise": ({}, 500),  # raises with its secret, by design
    "leak-cut": ({}, 500),
}
_COLD_STARTS = itertools.count(1)


def _warm_source(name: str, tmp: pytest.TempPathFactory) -> Path:
    """A copy of tests/functions/`name` as `name`-warm, in `isolation: warm`."""
    copy = tmp.mktemp(f"{name}-warm")
    shutil.copytree(FUNCTIONS / name, copy, dirs_exist_ok=True)
    manifest = (copy / "donjon.yaml").read_text()
    (copy / "donjon.yaml").write_text(
        manifest.replace(f"name: {name}", f"name: {name}-warm") + "isolation: warm\n"
    )
    return copy


#: Where each function the attacks deploy came from, so that a cold start can deploy it again.
Sources = dict[str, Path]


@pytest.fixture(scope="session")
def sources() -> Sources:
    """The source directory of every function deployed for the attacks, by name."""
    return {p.name: p for p in FUNCTIONS.iterdir() if (p / "donjon.yaml").exists()}


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies(
    node: LiveNode, tmp_path_factory: pytest.TempPathFactory, sources: Sources
) -> None:
    """Warm copies of the hostile functions, so each attack runs in both modes (invariant 4)."""
    for name in ("sec-attack", "sec-import", "sec-hog", "sec-isolation"):
        sources[f"{name}-warm"] = _warm_source(name, tmp_path_factory)
        node.deploy(sources[f"{name}-warm"])
    # probe-warm is deployed with the node (tests/conftest.py); this is its source.
    sources["probe-warm"] = _warm_source("probe", tmp_path_factory)


def _deploy_again(node: LiveNode, directory: Path) -> None:
    """Deploy a bundle the gate already passed (but for a text file) as a new version.

    With the admin's unsafe_skip_scan: the scan, half the time of a deploy, would only
    repeat itself; the new version's sandbox starts as any other's.
    """
    _, archive = build_bundle(directory)
    with node.client() as c:
        r = c.post("/v1/functions", content=archive, params={"unsafe_skip_scan": "true"})
    assert r.status_code == 201, f"cold start of {directory.name}: {r.status_code} {r.text}"


@pytest.fixture(params=STARTS, ids=[f"{s}-start" for s in STARTS])
def start(request: pytest.FixtureRequest) -> str:
    """`cold` or `warm`: how the attack's sandbox meets its first call."""
    value: str = request.param
    return value


@pytest.fixture
def started(
    node: LiveNode, start: str, sources: Sources, tmp_path_factory: pytest.TempPathFactory
) -> Ready:
    """`started(name)` readies `name` for the attack's first call in the test's `start`.

    cold: a new version of `name` is deployed (its bundle carries one more file), so
    the call that follows is the first its new sandbox serves; `just_deployed=True` says
    the test deployed it itself, fresh. warm: `name` serves one harmless call first.
    """

    def ready(name: str, *, just_deployed: bool = False) -> str:
        if start == "warm":
            event, status = _HARMLESS.get(name.removesuffix("-warm"), ({"op": "echo"}, 200))
            r = node.invoke(name, event)
            assert r.status_code == status, f"warm-up of {name}: {r.status_code} {r.text}"
        elif not just_deployed:
            copy = tmp_path_factory.mktemp(f"{name}-cold")
            shutil.copytree(sources[name], copy, dirs_exist_ok=True)
            (copy / "cold-start.txt").write_text(f"{next(_COLD_STARTS)}\n")
            _deploy_again(node, copy)
        return name

    return ready


@pytest.fixture
def fn(request: pytest.FixtureRequest, started: Ready) -> str:
    """The function named by the test's parameter, ready for its `start`."""
    return started(request.param)
