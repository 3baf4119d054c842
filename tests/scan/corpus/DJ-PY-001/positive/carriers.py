# ruff: noqa

"""Event data carried by generators, context managers, match captures, default
arguments, *args and **kwargs: graded as if passed directly."""
import contextlib
import os
import subprocess


def lines(e):
    yield e["cmd"]


@contextlib.contextmanager
def opened(value):
    yield value


def spread(*parts):
    os.system(parts[0])  # expect: DJ-PY-001@high


def forward(**options):
    subprocess.run(**options)  # expect: DJ-PY-001@high


def handler(event, context):
    for line in lines(event):
        os.system(line)  # expect: DJ-PY-001@high
    with opened(event["dir"]) as where:
        os.system("ls " + where)  # expect: DJ-PY-001@high
    match event:
        case {"tool": tool, **rest}:
            os.system(tool)  # expect: DJ-PY-001@high
    def later(path=event["path"]):
        os.system("cat " + path)  # expect: DJ-PY-001@high
    later()
    spread(event["a"])
    forward(args=event["b"], shell=True)
