# ruff: noqa

"""Constants carried by generators, match captures, defaults and **kwargs."""
import os
import subprocess


def fixed():
    yield "ls -la"


def forward(**options):
    subprocess.run(["ls", "-l"], **options)


def handler(event, context):
    for line in fixed():
        os.system(line)
    match "uptime":
        case str(tool):
            os.system(tool)
    def later(path="/srv"):
        os.system("ls " + path)
    later()
    forward(cwd=event["dir"])
