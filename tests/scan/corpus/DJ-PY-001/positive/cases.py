# ruff: noqa

"""Command injection: event data reaching a shell, or choosing the program to run."""
import asyncio
import os
import subprocess
import subprocess as sp
from os import popen


def handler(event, context):
    name = event["name"]
    os.system("convert " + name + " out.png")  # expect: DJ-PY-001@high
    os.popen(f"ls {event['dir']}")  # expect: DJ-PY-001@high
    cmd = "tar -czf archive.tgz %s" % event["path"]
    subprocess.call(cmd, shell=True)  # expect: DJ-PY-001@high
    sp.run("echo {}".format(name), shell=True)  # expect: DJ-PY-001@high
    parts = ["grep", "-r"]
    parts.append(name)
    subprocess.check_output(" ".join(parts), shell=True)  # expect: DJ-PY-001@high
    subprocess.run([event["program"], "--version"])  # expect: DJ-PY-001@high
    popen(_build(name))  # expect: DJ-PY-001@high
    _run_shell(event.get("query", ""))
    os.execvp(event["tool"], ["tool"])  # expect: DJ-PY-001@high
    for host in event["hosts"]:
        os.system("ping -c1 " + host)  # expect: DJ-PY-001@high
    return {"statusCode": 200}


def _build(value):
    return "ping -c 1 " + value


def _run_shell(text):
    subprocess.Popen("grep " + text + " /var/log/app.log", shell=True)  # expect: DJ-PY-001@high


async def resize(event, context):
    proc = await asyncio.create_subprocess_shell("identify " + event["file"])  # expect: DJ-PY-001@high
    return await proc.wait()


class Jobs:
    def handle(self, event, context):
        self.run(event["job"])

    def run(self, job):
        os.system("run-job " + job)  # expect: DJ-PY-001@high


def run_script(script):
    # Not traced to event data and not a constant: reported with low confidence.
    os.system(script)  # expect: DJ-PY-001@low
