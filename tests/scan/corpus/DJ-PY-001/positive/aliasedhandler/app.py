# ruff: noqa

"""The manifest's handler is an alias of the function that does the work."""
import os


def _work(body, ctx):
    os.system("echo " + body["text"])  # expect: DJ-PY-001@high


handler = _work
