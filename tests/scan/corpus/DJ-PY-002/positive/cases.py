# ruff: noqa

"""Code injection: evaluating data as code."""
import importlib


def handler(event, context):
    expr = event["expression"]
    result = eval(expr)  # expect: DJ-PY-002@high
    exec("x = " + event["code"])  # expect: DJ-PY-002@high
    code = compile(event["src"], "<event>", "exec")  # expect: DJ-PY-002@high
    plugin = importlib.import_module("plugins." + event["plugin"])  # expect: DJ-PY-002@high
    return {"result": result, "plugin": plugin.__name__, "code": code}


def evaluate(formula):
    return eval(formula)  # expect: DJ-PY-002@medium
