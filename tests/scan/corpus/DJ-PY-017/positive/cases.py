# ruff: noqa

"""Dynamic imports and attribute access that no scan can resolve, on dangerous modules."""
import builtins
import importlib
import operator
import os
import sys


def handler(event, context):
    getattr(os, event["fn"])("ls")  # expect: DJ-PY-017@high
    getattr(builtins, event["name"])  # expect: DJ-PY-017@high
    vars(builtins)[event["x"]]  # expect: DJ-PY-017@high
    globals()[event["g"]]  # expect: DJ-PY-017@high
    sys.modules[event["mod"]]  # expect: DJ-PY-017@high
    operator.methodcaller(event["m"], "ls")(os)  # expect: DJ-PY-017@high
    getattr(__import__("subprocess"), event["f"])  # expect: DJ-PY-017@high
    return {"statusCode": 200}


def pick(name):
    return getattr(os, name)  # expect: DJ-PY-017@medium


def lookup(name):
    return vars(builtins)[name]  # expect: DJ-PY-017@medium


def partly(suffix):
    return getattr(os, "sys" + suffix)  # expect: DJ-PY-017@medium


def module_from(rest):
    return importlib.import_module("o" + rest)  # expect: DJ-PY-017@medium


def any_module(name):
    return importlib.import_module(name)  # expect: DJ-PY-017@low


def loaded(name):
    return sys.modules[name]  # expect: DJ-PY-017@low
