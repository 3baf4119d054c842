"""Accepted input and automatic changes across a SIGKILL of the node (tests/crash_support.py
kills it): what a sender was not told was taken can be sent again and is then taken, and
a change the node made by itself is kept only with its audit record.

test_attack_admin_crash.py and test_attack_admin_commit.py attack the admin API's changes;
these attack what they leave out: a webhook delivery killed between its replay-cache row
and its queued event, and the monitor's automatic responses killed at their commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crash_support import CommitWatch, query, send, verify_intact
from harness import LiveNode, start_node
from triggers.webhook_signing import github_headers
from webhook_support import HANDLER, post_hook, wait_for_delivery

pytestmark = pytest.mark.slow  # nodes of their own, killed on purpose

#: Deliveries killed at their replay-cache row, at most (each costs a restart).
TRIES = 3


def _webhook(node: LiveNode, root: Path) -> tuple[str, str]:
    """A github webhook function, `hook-crash` at /crash; its path and secret value."""
    name, path, secret, value = "hook-crash", "/crash", "hook-crash-key", "gh-crash-secret-1"
    fn = root / name
    fn.mkdir(parents=True)
    (fn / "main.py").write_text(HANDLER)
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
        f"triggers:\n  - webhook: {{path: {path}, scheme: github, secret: {secret}}}\n"
    )
    with node.client() as c:
        assert c.post(f"/v1/secrets/{secret}", json={"value": value}).status_code == 201
    node.deploy(fn)
    return path, value


def _more_than(count: int) -> Callable[[list[Any]], bool]:
    """Whether a count read by a CommitWatch grew past `count`."""
    return lambda rows: bool(rows[0][0] > count)


def _queued(node: LiveNode, delivery: str) -> int:
    rows = query(node, "SELECT count(*) FROM invocations WHERE delivery_id = ?", delivery)
    return int(rows[0][0])


def test_webhook_delivery_killed_after_its_replay_row_is_taken_when_sent_again(
    tmp_path: Path,
) -> None:
    """A delivery killed once its id is in the replay cache, before its event is queued,
    was never answered 202: the sender's retry of it is taken (202) and runs."""
    node = start_node(tmp_path / "data", measured=False)  # killed
    try:
        path, secret = _webhook(node, tmp_path)
        hit = False
        for n in range(TRIES):
            delivery = f"crash-delivery-{n}"
            body = json.dumps({"n": n}).encode()
            headers = github_headers(secret, body, delivery)
            # (its row's key is not the delivery id: a github delivery does not sign it)
            sql = "SELECT count(*) FROM webhook_deliveries"
            held = query(node, sql)[0][0]
            with CommitWatch(node, sql, _more_than(held)) as watch:
                answer = send(node, "POST", f"/hooks{path}", content=body, headers=headers)
                assert watch.fired.wait(60)
            node.serve_again(measured=False)
            if _queued(node, delivery):
                continue  # killed after its event was queued: the window was missed
            hit = True
            assert answer is None or answer.status_code != 202, answer.text
            retry = post_hook(node, path, body, headers)
            assert retry.status_code == 202, (delivery, retry.status_code, retry.text)
            assert wait_for_delivery(node, "hook-crash", delivery)["body"]
            break
        assert hit, f"each of {TRIES} kills came after the event was queued"
        verify_intact(node)
    finally:
        node.stop()


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies() -> None:
    """Overrides tests/security/conftest.py's: this module starts nodes of its own, so the
    session's shared node (and its hostile functions) is not started for it."""
