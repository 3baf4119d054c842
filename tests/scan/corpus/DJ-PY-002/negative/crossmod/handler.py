# ruff: noqa

"""Code constants defined in another module of the bundle are still literals."""
from app import formulas
from app.formulas import SETUP


def handler(event, context):
    exec(SETUP)
    return {"area": eval(formulas.AREA, {"r": float(event["r"])})}
