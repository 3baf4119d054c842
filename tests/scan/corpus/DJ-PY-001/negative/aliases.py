# ruff: noqa

"""Not command injection: aliases of sinks given constants, aliases of harmless calls."""
import functools
import json
import os
import shlex
import subprocess

run = subprocess.run
quote = shlex.quote
dump = functools.partial(json.dumps, indent=2)
listing = functools.partial(subprocess.run, ["ls", "-la"])


def handler(event, context):
    run("du -sh /srv", shell=True)
    run(["convert", event["file"], "out.png"])
    run("echo " + quote(event["name"]), shell=True)
    f = os.system
    f("uptime")
    listing(check=False)
    getattr(os, "getcwd")()
    return {"statusCode": 200, "body": dump(event)}


def sorted_names(event, context):
    names = sorted(event["names"], key=lambda n: n.lower())
    show = lambda n: subprocess.run(["echo", n], check=False)
    show(event["name"])
    again = lambda n: again(n)
    again(event["x"])
    return names


HANDLERS = {"dump": json.dumps, "quote": shlex.quote}
COMMANDS = {"disk": subprocess.run}


def dispatch(event, context):
    COMMANDS["disk"](["df", "-h"])
    return HANDLERS[event["kind"]](event["body"])
