"""A captured webhook delivery replayed to spend its function's limits: anyone holding one
signed GitHub delivery (whose signature never expires) sends it again and again. Each
replay is refused (401), and must cost the function nothing: no quota, no rate bucket,
so the sender's real deliveries keep being taken. Against a real node."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from harness import LiveNode, fresh_source
from sec_support import assert_problem
from triggers.webhook_signing import github_headers
from webhook_support import HANDLER, post_hook

REPLAYS = 4


def _deploy(node: LiveNode, root: Path) -> tuple[str, str, str]:
    """A github webhook function with a daily quota of 2 invocations: (name, path, secret)."""
    name = "hook-spend"  # fixed: a random suffix in the secret's name reads as a password
    path, secret, value = "/spend", "hook-spend-key", "gh-" + secrets.token_hex(16)
    fn = root / name
    fn.mkdir()
    (fn / "main.py").write_text(HANDLER)
    (fn / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
        "limits: {rate: 600/minute}\n"
        f"triggers:\n  - webhook: {{path: {path}, scheme: github, secret: {secret}}}\n"
    )
    with node.client() as c:
        assert c.post(f"/v1/secrets/{secret}", json={"value": value}).status_code == 201
    node.deploy(fn)
    with node.client() as c:
        r = c.put(f"/v1/quotas/function:{name}", json={"invocations": 2})
        assert r.status_code in (200, 201), r.text
    return name, path, value


def _used(node: LiveNode, name: str) -> int:
    with node.client() as c:
        quotas = c.get("/v1/quotas").json()
    (mine,) = [q for q in quotas if q["subject"] == f"function:{name}"]
    used: int = mine["invocations"]["used"]
    return used


def test_replays_of_a_captured_delivery_spend_nothing(node: LiveNode, tmp_path: Path) -> None:
    """A delivery taken once, then replayed: each replay is 401 and spends none of the
    function's daily quota; the sender's next real delivery is still taken."""
    name, path, secret = _deploy(node, tmp_path)
    attacker = fresh_source()
    captured = json.dumps({"ref": "refs/heads/main", "n": 1}).encode()
    headers = github_headers(secret, captured)
    assert post_hook(node, path, captured, headers).status_code == 202
    for _ in range(REPLAYS):
        assert_problem(post_hook(node, path, captured, headers, attacker), 401)
    assert _used(node, name) == 1
    fresh = json.dumps({"ref": "refs/heads/main", "n": 2}).encode()
    r = post_hook(node, path, fresh, github_headers(secret, fresh))
    assert r.status_code == 202, r.text
