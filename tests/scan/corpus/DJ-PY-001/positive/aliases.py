# ruff: noqa

"""Command injection through aliases and dynamic lookups: graded as the plain call."""
import functools
import importlib
import operator
import os
import subprocess
import sys
from os import system as s

run = subprocess.run
shell = os.system
sh = functools.partial(subprocess.run, shell=True)


def handler(event, context):
    run(event["cmd"], shell=True)  # expect: DJ-PY-001@high
    shell("ls " + event["dir"])  # expect: DJ-PY-001@high
    s(event["line"])  # expect: DJ-PY-001@high
    f = os.popen
    f("cat " + event["file"])  # expect: DJ-PY-001@high
    sh(event["script"])  # expect: DJ-PY-001@high
    getattr(__import__("os"), "system")(event["a"])  # expect: DJ-PY-001@high
    importlib.import_module("o" + "s").system(event["b"])  # expect: DJ-PY-001@high
    sys.modules["subprocess"].call(event["c"], shell=True)  # expect: DJ-PY-001@high
    operator.methodcaller("system", event["d"])(os)  # expect: DJ-PY-001@high
    operator.attrgetter("popen")(os)(event["e"])  # expect: DJ-PY-001@high
    vars(os)["system"](event["g"])  # expect: DJ-PY-001@high
    os.__dict__.get("popen")(event["h"])  # expect: DJ-PY-001@high
    mod = importlib.import_module("subprocess")
    runner = getattr(mod, "check_output")
    runner(event["i"], shell=True)  # expect: DJ-PY-001@high
    return {"statusCode": 200}


class Jobs:
    call = subprocess.call
    spawn = staticmethod(os.system)

    def handle(self, event, context):
        self.call(event["job"], shell=True)  # expect: DJ-PY-001@high
        self.spawn("run-job " + event["job"])  # expect: DJ-PY-001@high
        Jobs.spawn(event["other"])  # expect: DJ-PY-001@high


def nested(event, context):
    def go(command):
        launch = subprocess.Popen
        launch(command, shell=True)  # expect: DJ-PY-001@high

    go(event["cmd"])


def wrapped(event, context):
    launch = lambda line: os.system("sh -c " + line)  # expect: DJ-PY-001@high
    launch(event["line"])
    return apply(subprocess.getoutput, event["cmd"])


def apply(function, argument):
    return function(argument)  # expect: DJ-PY-001@high


ACTIONS = {"list": subprocess.run, "status": os.system}


def dispatch(event, context):
    ACTIONS[event["action"]](event["arg"])  # expect: DJ-PY-001@high
    steps = [os.popen]
    steps[0](event["step"])  # expect: DJ-PY-001@high
