"""Invariants 1 and 8 swept over the public trigger routes: every kind of hostile request
in the table of trigger_sweep.py, sent as raw HTTP/1.1 (no client library to tidy it up),
to http triggers under /fn/ (each auth mode and event format), to signed webhooks under
/hooks/ (each scheme) and to a storage hook (an S3-compatible store's push).

Each request gets no 5xx and leaves no traceback in the node's log. A refusal is a problem
document (4xx) saying what is wrong, audited where docs/triggers.md says it is, and runs
nothing; a request taken gives the function an event that says what was sent (its method,
path, query, body and headers; nothing the platform writes itself is the caller's word).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import LiveNode, fresh_source, start_node
from trigger_sweep import ECHO_HANDLER, post_raw
from triggers.webhook_signing import github_headers, new_whsec, standard_headers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node of this file's own: the sweep's refusals and deployments are all it sees."""
    live = start_node(tmp_path_factory.mktemp("trigger-sweep-node"))
    try:
        yield live
    finally:
        live.stop()


def _deploy(node: LiveNode, root: Path, name: str, triggers: str) -> None:
    fn = root / name
    fn.mkdir(parents=True, exist_ok=True)
    (fn / "main.py").write_text(ECHO_HANDLER)
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
        f"limits: {{rate: 6000/minute, body: 64KiB}}\ntriggers:\n{triggers}"
    )
    node.deploy(fn)


def _set_secret(node: LiveNode, name: str, value: str) -> None:
    with node.client() as c:
        assert c.post(f"/v1/secrets/{name}", json={"value": value}).status_code == 201


def test_a_delivery_taken_before_a_hook_moved_is_a_replay_at_its_new_path(
    own: LiveNode, tmp_path: Path
) -> None:
    """The replay cache was kept per path, but no scheme signs the path: once a function's
    hooks moved (a redeploy with new paths, the same secrets), every delivery taken at the
    old paths was taken again at the new ones: a captured GitHub delivery for 7 days, a
    Standard Webhooks one for 5 minutes. A delivery is remembered under the secret that
    signed it, so it is a replay wherever its secret is checked."""
    std, gh = new_whsec(), "gh-" + new_whsec()
    _set_secret(own, "sweep-move-std", std)
    _set_secret(own, "sweep-move-gh", gh)

    def deploy_at(prefix: str) -> None:
        _deploy(
            own,
            tmp_path,
            "sweep-move",
            f"  - webhook: {{path: {prefix}-std, scheme: standard, secret: sweep-move-std}}\n"
            f"  - webhook: {{path: {prefix}-gh, scheme: github, secret: sweep-move-gh}}\n",
        )

    body = json.dumps({"type": "moved", "n": secrets.token_hex(6)}).encode()
    signed = {"std": standard_headers(std, body), "gh": github_headers(gh, body)}
    deploy_at("/before")
    for kind, headers in signed.items():
        assert post_raw(own, f"/hooks/before-{kind}", headers, body).status == 202
        assert post_raw(own, f"/hooks/before-{kind}", headers, body).status == 401
    deploy_at("/after")
    for kind, headers in signed.items():
        again = post_raw(own, f"/hooks/after-{kind}", headers, body, source=fresh_source())
        assert again.status == 401, (kind, again.status, again.text)
        assert "accepted before" in again.problem()["detail"]
