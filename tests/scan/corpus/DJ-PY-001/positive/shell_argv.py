# ruff: noqa

"""An argv list whose program is a shell given -c: the next item is a command line."""
import subprocess


def handler(event, context):
    subprocess.Popen(["/bin/sh", "-c", event["script"]])  # expect: DJ-PY-001@high
    subprocess.run(("bash", "-ec", "tar xf " + event["archive"]))  # expect: DJ-PY-001@high
