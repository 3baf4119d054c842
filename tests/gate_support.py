"""A bundle sent to a live node's deploy gate as it is, and the problems of a refusal:
shared by the attacks on the gate's IaC reading (Terraform's JSON syntax, OpenTofu)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from harness import LiveNode

__all__ = ["deploy_with", "gate_problems"]

#: A clean handler for the bundles these attacks send.
MAIN = b"def handler(event, context):\n    return {'ok': True}\n"


def deploy_with(
    node: LiveNode, key: str, manifest: bytes, files: Mapping[str, bytes]
) -> httpx.Response:
    """The bundle (`manifest` as donjon.yaml, a clean main.py, `files`) sent as it is."""
    return node.deploy_files(key, {"donjon.yaml": manifest, "main.py": MAIN, **files})


def gate_problems(r: httpx.Response) -> list[str]:
    """The problems of a deploy the gate refused (anything else fails the test)."""
    assert r.status_code == 422, r.text
    assert "block this deploy" in r.json()["detail"], r.text
    problems: list[str] = r.json()["problems"]
    return problems
