# ruff: noqa

"""Vendored code is not the function's code: never scanned by the code rules."""
import os


def handler(event, context):
    os.system(event["cmd"])
