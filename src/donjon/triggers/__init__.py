"""Event triggers beyond the invoke API: schedules (http triggers live in the gateway)."""

from __future__ import annotations

from donjon.triggers.cron import CronError, CronExpression
from donjon.triggers.schedule import Scheduler

__all__ = ["CronError", "CronExpression", "Scheduler"]
