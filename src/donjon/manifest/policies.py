"""Runtime policies (donjon.yaml `policies:`), FunctionShield-style.

Each policy says what happens when a call does something a function rarely
needs: `allow` (nothing), `alert` (it happens, and an audit record
`policy.alert` says so) or `block` (it is refused, and `policy.block` says so).

- `child_processes` (default `block`): fork, vfork, clone of a process,
  execve, execveat. Blocked calls get EPERM; the supervisor sees each attempt
  through a seccomp user notification, so the record cannot be hidden.
- `tmp_write` (default `allow`): writing to the call's /tmp (and /dev/shm).
  Block: both are mounted read-only before any function code.
- `read_own_code` (default `allow`): reading the bundle's own files once the
  handler is imported. Block: a Landlock domain without /fn (its vendored
  dependencies in /fn/.deps stay readable).
- `egress_attempts` (default `alert`): what a refused egress connection does
  (the egress proxy applies it): `alert` records it, `block` also ends the call.

The sandbox reads them from `InstanceConfig.policies`; docs/security.md,
"Runtime policies", says what each mode rests on.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["PolicyMode", "RuntimePolicies"]


class PolicyMode(StrEnum):
    """What a runtime policy does when a call does the thing it watches."""

    ALLOW = "allow"
    ALERT = "alert"
    BLOCK = "block"


class RuntimePolicies(BaseModel):
    """The function's runtime policies; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    child_processes: PolicyMode = PolicyMode.BLOCK
    tmp_write: PolicyMode = PolicyMode.ALLOW
    read_own_code: PolicyMode = PolicyMode.ALLOW
    #: Applied by the egress proxy (`EgressProxy.open_sandbox(egress_attempts=...)`).
    egress_attempts: Literal["alert", "block"] = "alert"

    def runtime(self) -> dict[str, str]:
        """What the sandbox's runtime enforces itself, as it reads it (plain strings)."""
        return {
            "child_processes": self.child_processes.value,
            "tmp_write": self.tmp_write.value,
            "read_own_code": self.read_own_code.value,
        }
