"""The serving process's open-file limit, raised to its hard limit at start.

Every client connection, egress connection and sandbox holds open files of the
gateway process. Service managers commonly start it with a soft limit of 1,024 (kept
low for programs that still use select(2)) and a hard limit far above; the node uses
no select(2) on its own descriptors, so it raises the soft limit to the hard one (at
most `MAX_OPEN_FILES`), as systemd advises such services to do. The bounds taken from
it (gateway/connections.py, egress/budget.py) are then shares of what the process may
really open. A sandbox's workers set their own, lower limit (sandbox/runtime/isolation.py).
"""

from __future__ import annotations

import logging
import resource

__all__ = ["MAX_OPEN_FILES", "raise_open_files"]

log = logging.getLogger("donjon.gateway")

#: The soft limit is raised no further than this (the caps derived from it stay sane).
MAX_OPEN_FILES = 1 << 20


def raise_open_files() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to its hard limit (at most MAX_OPEN_FILES);
    the soft limit before and after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        except (ValueError, OSError) as e:  # a container may refuse; the bounds follow soft
            log.warning("open files: the soft limit %d could not be raised: %s", soft, e)
            return soft, soft
        log.info("open files: the soft limit raised from %d to %d", soft, ceiling)
        return soft, ceiling
    return soft, soft
