# ruff: noqa

"""Not command injection: constants, argv lists, sanitized or allowlisted values."""
import os
import shlex
import subprocess

TOOLS = {"df", "uptime"}


def handler(event, context):
    os.system("ls -la /srv")
    subprocess.run("du -sh /srv", shell=True)
    subprocess.run(["convert", event["file"], "out.png"])
    args = ["grep", "-r"]
    args.append(event["pattern"])
    subprocess.run(args, check=True)
    subprocess.run("echo " + shlex.quote(event["name"]), shell=True)
    count = int(event["count"])
    os.system("head -n %d /var/log/app.log" % count)
    tool = event["tool"]
    if tool not in TOOLS:
        return {"statusCode": 400}
    os.system(tool)
    number = event["n"]
    if number.isdigit():
        os.system("seq " + number)
    _quiet("uptime")
    subprocess.run(f"du -sh {'/srv'}", shell=True, check=False)
    return {"statusCode": 200}


def _quiet(command):
    subprocess.run(command, shell=True, check=False)
