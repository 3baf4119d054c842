# ruff: noqa

"""Predictable names in shared temporary directories."""
import os
import tempfile
from pathlib import Path


def handler(event, context):
    name = tempfile.mktemp(suffix=".png")  # expect: DJ-PY-009@high
    with open("/tmp/report.csv", "w") as out:  # expect: DJ-PY-009@medium
        out.write(event["csv"])
    Path("/tmp/cache.json").write_text("{}")  # expect: DJ-PY-009@medium
    scratch = os.path.join(tempfile.gettempdir(), "upload.bin")
    with open(scratch, "wb") as f:  # expect: DJ-PY-009@medium
        f.write(b"")
    return {"name": name}
