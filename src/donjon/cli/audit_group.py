"""`donjon audit`: the group of admin.py (verify, pubkey) with the commands of
audit_cmd.py (prove, consistency, checkpoints, check-proof, export, tail) and
timeline.py, put together when the group is first used (cli/lazy.py)."""

from __future__ import annotations

from donjon.cli.admin import audit
from donjon.cli.audit_cmd import AUDIT_COMMANDS
from donjon.cli.timeline import timeline

__all__ = ["audit"]

for command in (timeline, *AUDIT_COMMANDS):
    audit.add_command(command)
