# ruff: noqa

"""A from_string() in a module that imports no template engine: low confidence."""
from .settings import renderer


def handler(event, context):
    return renderer.from_string(event["layout"]).render()  # expect: DJ-PY-013@low
