# ruff: noqa

"""Not dynamic access to a dangerous module: ordinary objects, harmless constant names,
plugin loaders on the bundle's own packages, dispatch tables by prefix."""
import functools
import importlib
import json
import operator
import os
import socket
import sys

ACTIONS = ("start", "stop")


class Service:
    def start(self):
        return "started"

    def stop(self):
        return "stopped"

    def handle(self, event, context):
        action = event["action"]
        if action not in ACTIONS:
            return {"statusCode": 400}
        return getattr(self, action)()


def handle_ping(event):
    return "pong"


def handler(event, context):
    codec = importlib.import_module("json")
    cwd = getattr(os, "getcwd")()
    join = getattr(os.path, "join")
    dumps = functools.partial(json.dumps, indent=2)
    name = operator.attrgetter("name")(context)
    here = sys.modules[__name__]
    route = getattr(here, "handle_" + event["kind"])
    reply = globals()["handle_" + event["kind"]](event)
    settings = vars(context)
    return {"body": dumps([codec.__name__, cwd, join("a", "b"), name, route, reply, settings])}


def load_plugin(name):
    return importlib.import_module("plugins." + name)


def family(kind):
    return getattr(socket, "AF_" + kind)


def submodule(name):
    return importlib.import_module(f"{__name__}.{name}")
