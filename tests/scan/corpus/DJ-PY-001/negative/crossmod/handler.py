# ruff: noqa

"""Cross-module: helpers that quote or check what the handler gives them."""
import os

from tools import safe
from tools.safe import pick_format


def handler(event, context):
    safe.convert(event["name"])
    pick_format(event["format"])
    safe.uptime()
    os.system("convert " + safe.quoted(event["name"]) + " out.png")  # quoted: not a payload
    return {"ok": True}
