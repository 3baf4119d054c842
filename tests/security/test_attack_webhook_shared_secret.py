"""A captured webhook delivery replayed to another path that shares its secret.

GitHub signs a delivery's body, not its URL (Stripe and Standard Webhooks sign a
timestamp and the body; a storage push sends a bearer token): a delivery made for
`/hooks/deploys` passes the signature check at `/hooks/billing` when both name the same
secret, and the replay cache, kept per path, had never seen it there. One holder of a
captured delivery for one function's hook then ran another function with it. A hook
secret is now one path's: a deploy whose hook would share one is refused, naming both.
Against a real node."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx

from donjon.bundle import build_bundle
from harness import LiveNode
from triggers.webhook_signing import github_headers
from webhook_support import HANDLER, post_hook

SECRET = "shared-hook-key"


def _function(root: Path, name: str, hooks: list[str]) -> Path:
    fn = root / name
    fn.mkdir()
    (fn / "main.py").write_text(HANDLER)
    lines = "".join(
        f"  - webhook: {{path: {path}, scheme: github, secret: {SECRET}}}\n" for path in hooks
    )
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\ntriggers:\n{lines}"
    )
    return fn


def _deploy(node: LiveNode, fn: Path) -> httpx.Response:
    _, archive = build_bundle(fn)
    with node.client() as c:
        return c.post(
            "/v1/functions", content=archive, headers={"content-type": "application/gzip"}
        )


def test_a_hook_secret_authenticates_one_path(node: LiveNode, tmp_path: Path) -> None:
    value = "gh-" + secrets.token_hex(16)
    with node.client() as c:
        assert c.post(f"/v1/secrets/{SECRET}", json={"value": value}).status_code == 201
    assert _deploy(node, _function(tmp_path, "hook-deploys", ["/deploys"])).status_code == 201

    other = _deploy(node, _function(tmp_path, "hook-billing", ["/billing"]))
    assert other.status_code == 422, other.text
    assert "already authenticates /hooks/deploys (hook-deploys)" in other.json()["detail"]
    captured = json.dumps({"ref": "refs/heads/main"}).encode()
    replayed = post_hook(node, "/billing", captured, github_headers(value, captured))
    assert replayed.status_code == 404, replayed.text  # no function behind it

    both = _deploy(node, _function(tmp_path, "hook-both", ["/one", "/two"]))
    assert both.status_code == 422, both.text
    assert "authenticates both /hooks/one and /hooks/two" in both.json()["detail"]

    # The same function's next version keeps its path and its secret.
    again = tmp_path / "again"
    again.mkdir()
    fn = _function(again, "hook-deploys", ["/deploys"])
    (fn / "main.py").write_text(HANDLER + "\n# v2\n")
    assert _deploy(node, fn).status_code == 201
    assert post_hook(node, "/deploys", captured, github_headers(value, captured)).status_code == 202
