# ruff: noqa

"""A command line or code inside an argv list: a shell behind a wrapper, another
interpreter's inline code, find -exec, ssh's remote command, the os.exec*/spawn* argv."""
import asyncio
import os
import pty
import subprocess


def handler(event, context):
    script = event["script"]
    subprocess.run(["sudo", "-u", "app", "bash", "-c", script])  # expect: DJ-PY-001@high
    subprocess.run(["timeout", "5", "sh", "-c", script])  # expect: DJ-PY-001@high
    subprocess.run(["/usr/bin/env", "LANG=C", "bash", "-lc", script])  # expect: DJ-PY-001@high
    subprocess.run(["docker", "exec", "worker", "sh", "-c", script])  # expect: DJ-PY-001@high
    subprocess.run(["bash", "-o", "pipefail", "-c", script])  # expect: DJ-PY-001@high
    subprocess.run(["su", "app", "-c", script])  # expect: DJ-PY-001@high
    subprocess.run(["python3", "-c", script])  # expect: DJ-PY-001@high
    subprocess.run(["perl", "-we", script])  # expect: DJ-PY-001@high
    subprocess.run(["node", "--eval", script])  # expect: DJ-PY-001@high
    subprocess.run(["find", "/tmp", "-name", "*.log", "-exec", event["tool"], "{}", ";"])  # expect: DJ-PY-001@high
    subprocess.run(["ssh", "-i", "/var/task/key", "deploy@build", "make", event["target"]])  # expect: DJ-PY-001@high
    os.execl("/bin/sh", "sh", "-c", script)  # expect: DJ-PY-001@high
    os.spawnvp(os.P_WAIT, "bash", ["bash", "-c", script])  # expect: DJ-PY-001@high
    pty.spawn(["sh", "-c", script])  # expect: DJ-PY-001@high
    asyncio.create_subprocess_exec("sh", "-c", script)  # expect: DJ-PY-001@high
    return {"statusCode": 202}


def deploy(event, context):
    host = event["host"]
    subprocess.run(["ssh", "-o", "BatchMode=yes", f"deploy@{host}", "restart", event["unit"]])  # expect: DJ-PY-001@high
    subprocess.run(["bash", "--rcfile", "/etc/app.rc", "-c", event["script"]])  # expect: DJ-PY-001@high


def prepared(event, context):
    argv = ["bash", "-c", event["script"]]
    subprocess.run(argv)  # expect: DJ-PY-001@low
