"""The system resolver under a function whose names a DNS server never answers
(helper-122's review): its lookups block their threads until glibc gives up, and before
they ran on libuv's four threads, which a handful of them held, so every other
function's names failed to resolve, /etc/hosts' too. Now a function has at most
LOOKUPS_PER_FUNCTION lookups running on the resolver's own threads.

A real getaddrinfo against a real silent server: the test runs in a process of its own
in a mount namespace whose /etc/resolv.conf names a UDP socket on 127.0.0.9 that
never answers, and whose /etc/hosts names the victim's host (root only: unshare -m)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)

SCENARIO = r"""
import asyncio, json, socket
import uvloop
from donjon.egress.resolve import LOOKUPS_PER_FUNCTION, ResolveError, SystemResolver

silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent.bind(("127.0.0.9", 53))  # receives every question, answers none

async def main():
    resolver = SystemResolver()
    async def attack(i):
        try:
            await resolver.resolve(f"r{i}.slow.donjon.test", "attacker")
            return "resolved"
        except ResolveError as e:
            return e.message
    attacks = [asyncio.ensure_future(attack(i)) for i in range(12)]
    await asyncio.sleep(0.5)  # the attacker's lookups are on their threads
    running = resolver.running("attacker")
    victim = await resolver.resolve("victim.donjon.test", "victim")
    still = resolver.running("attacker")
    outcomes = await asyncio.gather(*attacks)
    return {
        "per_function": LOOKUPS_PER_FUNCTION,
        "running": running,
        "victim": [str(a) for a in victim],
        "running_after_victim": still,
        "refused": sum("still running" in o for o in outcomes),
    }

print(json.dumps(uvloop.run(main())))
"""


def test_one_functions_stuck_lookups_leave_the_others_names_resolving(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.9\noptions timeout:2 attempts:1\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.2 victim.donjon.test\n")
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO)
    shell = (
        f"mount --bind {resolv} /etc/resolv.conf && mount --bind {hosts} /etc/hosts"
        f" && exec {sys.executable} {script}"
    )
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", shell],  # noqa: S607 - the system's unshare, by PATH
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    per_function = seen["per_function"]
    assert seen["running"] == per_function  # the rest refused at once, not queued
    assert seen["refused"] == 12 - per_function
    assert seen["victim"] == ["127.0.0.2"]  # resolved while the attacker's still block
    assert seen["running_after_victim"] == per_function
