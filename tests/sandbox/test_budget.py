"""The node-wide budget's figures: from the settings, else from this host."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.config import ConfigError, SandboxSettings, load_settings
from donjon.sandbox.budget import host_memory_bytes, node_budget, parse_node_group


def test_the_settings_set_the_budget(tmp_path: Path) -> None:
    """DONJON_SANDBOX_MEMORY_BUDGET_MB and DONJON_SANDBOX_PIDS_BUDGET are the figures used."""
    settings = load_settings(
        {
            "DONJON_DATA_DIR": str(tmp_path),
            "DONJON_SANDBOX_MEMORY_BUDGET_MB": "300",
            "DONJON_SANDBOX_PIDS_BUDGET": "500",
        }
    )
    budget = node_budget(settings.sandbox)
    assert (budget.memory_bytes, budget.pids) == (300 << 20, 500)
    assert budget.memory_source == "DONJON_SANDBOX_MEMORY_BUDGET_MB"


def test_the_default_budget_is_a_share_of_this_host() -> None:
    """Unset: 80% of the host's memory (at least 256 MiB), half the kernel's pid_max."""
    budget = node_budget(SandboxSettings())
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    threads_max = int(Path("/proc/sys/kernel/threads-max").read_text())
    assert budget.pids == min(pid_max, threads_max) // 2
    assert 256 << 20 <= budget.memory_bytes <= host_memory_bytes()
    assert "80%" in budget.memory_source


@pytest.mark.parametrize(
    ("name", "value"),
    [("DONJON_SANDBOX_MEMORY_BUDGET_MB", "10"), ("DONJON_SANDBOX_PIDS_BUDGET", "lots")],
)
def test_a_bad_budget_is_refused_by_name(tmp_path: Path, name: str, value: str) -> None:
    """A budget below the floor or not a number is a clear error naming the variable."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"DONJON_DATA_DIR": str(tmp_path), name: value})
    assert name in caught.value.message


def test_only_node_cgroup_names_name_a_node() -> None:
    """The sweep reads a node's pid from its cgroup's name, and from nothing else."""
    assert parse_node_group("node-1234-0123abcd") == 1234
    assert parse_node_group("probe-v1-0123456789ab") is None
    assert parse_node_group("node-12-34-0123abcd") is None
