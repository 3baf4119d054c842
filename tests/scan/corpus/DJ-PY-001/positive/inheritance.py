# ruff: noqa

"""Sinks in a base class's methods, reached through a subclass, super() or an instance
of a class whose attribute is a sink."""
import os
import subprocess


class Runner:
    def run(self, line):
        os.system(line)  # expect: DJ-PY-001@high


class Quiet(Runner):
    def run(self, line):
        super().run(line + " >/dev/null")


class Loud(Runner):
    pass


class Tools:
    check = staticmethod(subprocess.getoutput)


def handler(event, context):
    Quiet().run(event["a"])
    Loud().run(event["b"])
    Tools().check(event["c"])  # expect: DJ-PY-001@high
