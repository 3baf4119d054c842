# ruff: noqa

"""Event data as an argument, never as a script or program: wrappers, interpreters
running a file or module, find and ssh with constant commands."""
import os
import subprocess


def handler(event, context):
    name = event["name"]
    subprocess.run(["sudo", "-u", "app", "convert", name, "out.png"])
    subprocess.run(["env", "LANG=C", "sort", name])
    subprocess.run(["bash", "-o", "pipefail", "-c", "df -h | tail -n 1"])
    subprocess.run(["python3", "report.py", "-c", name])
    subprocess.run(["python3", "-m", "pip", "download", name])
    subprocess.run(["find", "/tmp", "-name", name, "-exec", "rm", "{}", ";"])
    subprocess.run(["ssh", "deploy@build", "uptime"])
    subprocess.run(["git", "-c", "core.pager=cat", "log", "--author", name])
    os.execl("/usr/bin/convert", "convert", name, "out.png")
    return {"statusCode": 200}


def deploy(event, context):
    subprocess.run(["ssh", f"deploy@{event['host']}", "systemctl", "restart", "app"])
    subprocess.run(["bash", "--rcfile", event["rc"], "-c", "make all"])


def prepared(event, context):
    argv = ["convert", event["name"], "out.png"]
    subprocess.run(argv)
    subprocess.run(["sh", "build.sh", event["target"]])
