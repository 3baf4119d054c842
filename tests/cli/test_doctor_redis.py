"""`donjon doctor` warns of a Redis that puts the shared limits at risk, never silently.

A Redis that takes clients without a password lets anyone who reaches it reset every
quota or hold every slot; one reached in clear on another host carries the password
and the counts unencrypted; one whose maxmemory-policy evicts keys drops quotas and
held slots (every Donjon key has a TTL); one that keeps nothing forgets the day's
quotas when it restarts; one on a network functions may be granted egress to is theirs
to reset. Information, like the backend's line: the exit code does not
change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import donjon_env, run_cli
from redis_support import RedisServer, redis_server

__all__ = ["redis_server"]


def _limits(data: Path, url: str, **more: str) -> tuple[dict[str, Any], str]:
    env = {**donjon_env(data), "DONJON_REDIS_URL": url, **more}
    done = run_cli(env, "doctor", "--output", "json", check=False)
    text = run_cli(env, "doctor", check=False).stdout
    limits: dict[str, Any] = json.loads(done.stdout)["limits"]
    return limits, done.stdout + done.stderr + text


def test_doctor_warns_of_a_redis_without_a_password_or_that_evicts(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The test Redis (no password, no persistence): two risks, each also in the text
    output; an evicting maxmemory-policy adds one; a password (given in the URL and
    required by the server) removes the first, and is never shown."""
    data = tmp_path / "data"
    limits, out = _limits(data, redis_server.url)
    assert limits["answers"] is True
    risks = " | ".join(limits["risks"])
    assert "without a password" in risks and "restart" in risks, risks
    assert "evicts" not in risks and "in clear" not in risks, risks
    assert "limits risk:" in out and "without a password" in out.split("limits risk:", 1)[1]
    with redis_server.client() as c:
        c.config_set("maxmemory-policy", "volatile-lru")
        c.config_set("requirepass", "s3cr3t-pw")
    url = redis_server.url.replace("redis://", "redis://:s3cr3t-pw@")
    limits, out = _limits(data, url)
    assert limits["answers"] is True
    risks = " | ".join(limits["risks"])
    assert "volatile-lru" in risks and "evicts" in risks, risks
    assert "without a password" not in risks, risks
    assert "s3cr3t-pw" not in out


def test_doctor_warns_of_a_redis_reached_in_clear_on_another_host(tmp_path: Path) -> None:
    """redis:// to a host that is not loopback: the password crosses the network in clear
    (rediss:// is TLS, unless told not to verify the server); said even when that Redis
    does not answer."""
    limits, _ = _limits(tmp_path / "data", "redis://:pw@192.0.2.7:6379/0")
    assert limits["answers"] is False
    assert any("in clear" in r and "rediss://" in r for r in limits["risks"]), limits
    limits, _ = _limits(tmp_path / "data", "rediss://:pw@192.0.2.7:6379/0")
    assert limits["risks"] == [], limits
    unverified = "rediss://:pw@192.0.2.7:6379/0?ssl_cert_reqs=none"
    limits, _ = _limits(tmp_path / "data", unverified)
    assert any("does not verify" in r for r in limits["risks"]), limits


def test_doctor_warns_when_functions_may_be_granted_egress_to_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """DONJON_EGRESS_ALLOW_NETWORKS opens the network Redis is on: a function granted
    egress to it can reset every quota or hold every slot. Said, naming the network."""
    data = tmp_path / "data"
    limits, _ = _limits(data, redis_server.url)
    assert not any("egress" in r for r in limits["risks"]), limits
    limits, _ = _limits(data, redis_server.url, DONJON_EGRESS_ALLOW_NETWORKS="127.0.0.0/8")
    (risk,) = [r for r in limits["risks"] if "egress" in r]
    assert "127.0.0.0/8" in risk and "DONJON_EGRESS_ALLOW_NETWORKS" in risk, risk
