"""A second tenant's function: it looks for anything another function left or runs."""

import os


def handler(event, context):
    found = {}
    for path in event.get("paths", []):
        try:
            if os.path.isdir(path):
                found[path] = sorted(os.listdir(path))
            else:
                with open(path, "rb") as f:
                    found[path] = f.read(256).decode("latin-1")
        except OSError:
            pass
    cmdlines = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    cmdlines[p] = f.read().replace(b"\0", b" ").decode("latin-1").strip()
            except OSError:
                cmdlines[p] = "?"
    comms = {}
    for p in cmdlines:
        try:
            with open(f"/proc/{p}/comm") as f:
                comms[p] = f.read().strip()
        except OSError:
            comms[p] = "?"
    return {
        "found": found,
        "cmdlines": cmdlines,
        "comms": comms,
        "tmp": sorted(os.listdir("/tmp")),
        "fn": sorted(os.listdir("/fn")),
    }
