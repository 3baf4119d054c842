"""A node serving signed webhooks, for tests/gateway/test_webhooks.py and the attacks in
tests/security/test_attack_webhooks.py: functions for each scheme that print what
their event says (`donjon logs` shows it), their secrets in the vault, and a way to
wait for a delivery's run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from harness import LiveNode
from triggers.webhook_signing import new_whsec

#: Each scheme's function and path: (function, path under /hooks, vault secret).
HOOKS = {
    "standard": ("hook-std", "/std", "hook-std-key"),
    "github": ("hook-gh", "/gh", "hook-gh-key"),
    "stripe": ("hook-stripe", "/stripe", "hook-stripe-key"),
}
#: What the function prints for each delivery: its marker, then the event's fields.
HANDLER = """\
import json
def handler(event, context):
    print("DELIVERY " + json.dumps({
        "delivery_id": event["delivery_id"],
        "event_type": event["event_type"],
        "body": event["body"],
        "trigger_headers": sorted(event["headers"]),
    }, sort_keys=True))
    return {"ok": True}
"""


def deploy_hooks(node: LiveNode, root: Path, body_limit: str = "64KiB") -> dict[str, str]:
    """Deploy one function per scheme with a fresh secret in the vault; the secrets."""
    secrets = {"standard": new_whsec(), "github": "gh-" + new_whsec(), "stripe": "whsec_s1"}
    with node.client() as c:
        for scheme, (name, path, secret) in HOOKS.items():
            r = c.post(f"/v1/secrets/{secret}", json={"value": secrets[scheme]})
            assert r.status_code == 201, r.text
            fn = root / name
            fn.mkdir(parents=True)
            (fn / "main.py").write_text(HANDLER)
            (fn / "donjon.yaml").write_text(
                f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
                f"limits: {{rate: 600/minute, body: {body_limit}}}\n"
                f"triggers:\n  - webhook: {{path: {path}, scheme: {scheme}, secret: {secret}}}\n"
            )
            node.deploy(fn)
    return secrets


def post_hook(
    node: LiveNode, path: str, body: bytes, headers: dict[str, str], source: str | None = None
) -> httpx.Response:
    """POST a delivery to /hooks`path`, from the loopback address `source` if given. The
    client waits up to two minutes: a 5.9 MB delivery checked against a schema of 900,000
    items takes 4.7-5.6 s on a quiet machine, and took over 30 s in a suite run under
    coverage (its answer, not its time, is what a test asserts)."""
    transport = (
        None if source is None else httpx.HTTPTransport(verify=node.tls, local_address=source)
    )
    with httpx.Client(base_url=node.url, verify=node.tls, timeout=120, transport=transport) as c:
        return c.post(f"/hooks{path}", content=body, headers=headers)


def deliveries(node: LiveNode, name: str) -> list[dict[str, Any]]:
    """What the function printed for each delivery it ran, oldest first."""
    with node.client() as c:
        entries: list[dict[str, Any]] = c.get(
            f"/v1/functions/{name}/logs", params={"n": 200}
        ).json()
    out = []
    for entry in reversed(entries):
        for line in str(entry["output"]).splitlines():
            if line.startswith("DELIVERY "):
                out.append({**json.loads(line[9:]), "request_id": entry["request_id"]})
    return out


def wait_for_delivery(node: LiveNode, name: str, delivery_id: str) -> dict[str, Any]:
    """The run of `delivery_id` by `name`, once its log is written (60 s at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for seen in deliveries(node, name):
            if seen["delivery_id"] == delivery_id:
                return seen
        time.sleep(0.2)
    raise AssertionError(f"{name} never ran delivery {delivery_id}")


def audit(node: LiveNode, n: int = 500) -> list[dict[str, Any]]:
    with node.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": n}).json()
    return records
