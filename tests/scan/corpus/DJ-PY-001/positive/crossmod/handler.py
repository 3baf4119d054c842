# ruff: noqa

"""Cross-module taint: the handler's event reaches sinks in the bundle's own helper modules,
through absolute imports of a package, a module alias, a re-export and a return value."""
import os

import helpers
import helpers.shell as sh
from helpers import shell
from helpers.jobs.runner import run_job
from helpers.ping import ping


def handler(event, context):
    helpers.archive(event["name"])  # re-exported by helpers/__init__.py from .shell
    shell.thumbnail(event["image"])
    os.system(sh.build_command(event["file"]))  # expect: DJ-PY-001@high
    run_job(event["job"])
    ping(event["host"], 3)
    return {"ok": True}
