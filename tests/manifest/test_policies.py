"""The `policies:` section of donjon.yaml (manifest/policies.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.lifecycle.registry import instance_config
from donjon.manifest import ManifestError, PolicyMode, RuntimePolicies, parse_manifest

BASE = "name: a\nhandler: m.h\n"


def test_defaults_block_child_processes_only() -> None:
    """No `policies:` at all: child processes blocked, the rest allowed, egress attempts alerted."""
    p = parse_manifest(BASE).policies
    assert p == RuntimePolicies()
    assert p.child_processes is PolicyMode.BLOCK
    assert p.tmp_write is PolicyMode.ALLOW
    assert p.read_own_code is PolicyMode.ALLOW
    assert p.egress_attempts == "alert"


@pytest.mark.parametrize("mode", ["allow", "alert", "block"])
@pytest.mark.parametrize("policy", ["child_processes", "tmp_write", "read_own_code"])
def test_each_runtime_policy_takes_each_mode(policy: str, mode: str) -> None:
    """allow, alert and block are accepted for the three runtime policies."""
    p = parse_manifest(BASE + f"policies: {{{policy}: {mode}}}\n").policies
    assert getattr(p, policy) is PolicyMode(mode)
    assert p.runtime()[policy] == mode


@pytest.mark.parametrize("mode", ["alert", "block"])
def test_egress_attempts_takes_alert_or_block(mode: str) -> None:
    """egress_attempts: alert (default) or block."""
    assert (
        parse_manifest(BASE + f"policies: {{egress_attempts: {mode}}}\n").policies.egress_attempts
        == mode
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("policies: {egress_attempts: allow}\n", "egress_attempts"),
        ("policies: {child_processes: deny}\n", "child_processes"),
        ("policies: {tmp_write: true}\n", "tmp_write"),
        ("policies: {child_process: allow}\n", "child_process"),
        ("policies: [child_processes]\n", "policies"),
    ],
)
def test_bad_policies_are_refused_naming_the_field(text: str, field: str) -> None:
    """A bad value, an unknown policy or a wrong shape is a manifest error naming it."""
    with pytest.raises(ManifestError) as info:
        parse_manifest(BASE + text)
    assert field in " ".join([info.value.message, *info.value.problems])


def test_policies_reach_the_sandbox_config() -> None:
    """InstanceConfig.policies is the manifest's (what the sandbox enforces)."""
    m = parse_manifest(BASE + "policies: {child_processes: alert, read_own_code: block}\n")
    config = instance_config(m, 1, Path("/nonexistent"))
    assert config.policies == m.policies
    assert config.policies.runtime() == {
        "child_processes": "alert",
        "tmp_write": "allow",
        "read_own_code": "block",
    }
