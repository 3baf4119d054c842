# ruff: noqa

"""Not code injection: literal parsing, constant code, dispatch tables."""
import ast
import importlib
import json
import operator

OPS = {"add": operator.add, "sub": operator.sub}


def handler(event, context):
    value = ast.literal_eval(event["literal"])
    data = json.loads(event["body"])
    total = eval("1 + 2")
    exec("import math")
    op = OPS[event["op"]]
    codec = importlib.import_module("json")
    return {"value": value, "data": data, "total": total, "r": op(1, 2), "c": codec.__name__}
