"""A function that uses /tmp: each invocation gets its own empty, private /tmp."""

import os
import tempfile


def handler(event, context):
    before = sorted(os.listdir("/tmp"))
    with tempfile.NamedTemporaryFile("w", dir="/tmp", suffix=".txt", delete=False) as f:
        f.write(event.get("text", "scratch"))
        path = f.name
    with open(path) as f:
        text = f.read()
    return {"tmp_before": before, "wrote": os.path.basename(path), "read_back": text}
