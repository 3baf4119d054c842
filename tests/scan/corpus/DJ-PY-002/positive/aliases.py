# ruff: noqa

"""Code injection through aliases and dynamic lookups, and code decoded at run time."""
import base64
import builtins
import importlib
import zlib

ev = eval
BLOB = "cHJpbnQoJ2hlbGxvJyk="


def handler(event, context):
    ev(event["expr"])  # expect: DJ-PY-002@high
    ev.__call__(event["expr"])  # expect: DJ-PY-002@high
    vars(builtins)["ev" + "al"](event["code"])  # expect: DJ-PY-002@high
    builtins.__dict__["exec"](event["code"])  # expect: DJ-PY-002@high
    globals()["__builtins__"]["eval"](event["e"])  # expect: DJ-PY-002@high
    __builtins__["exec"](event["f"])  # expect: DJ-PY-002@high
    getattr(builtins, "exec")(event["x"])  # expect: DJ-PY-002@high
    run_code = getattr(importlib.import_module("builtins"), "compile")
    run_code(event["src"], "<event>", "exec")  # expect: DJ-PY-002@high
    return {"statusCode": 200}


def bootstrap():
    exec(base64.b64decode("cHJpbnQoMSk="))  # expect: DJ-PY-002@medium
    payload = zlib.decompress(base64.b64decode(BLOB)).decode()
    exec(payload)  # expect: DJ-PY-002@medium
