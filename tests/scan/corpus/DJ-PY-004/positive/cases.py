# ruff: noqa

"""Unsafe deserialization: formats that can carry code."""
import base64
import marshal
import pickle
import shelve

import jsonpickle
import yaml


def handler(event, context):
    blob = base64.b64decode(event["payload"])
    obj = pickle.loads(blob)  # expect: DJ-PY-004@high
    cfg = yaml.load(event["config"], Loader=yaml.Loader)  # expect: DJ-PY-004@high
    state = jsonpickle.decode(event["state"])  # expect: DJ-PY-004@high
    code = marshal.loads(blob)  # expect: DJ-PY-004@high
    doc = yaml.unsafe_load(event["doc"])  # expect: DJ-PY-004@high
    return {"obj": obj, "cfg": cfg, "state": state, "code": code, "doc": doc}


def load_cache(path):
    with open(path, "rb") as f:
        return pickle.load(f)  # expect: DJ-PY-004@medium


def settings():
    with open("settings.yaml") as f:
        return yaml.load(f)  # expect: DJ-PY-004@medium


def sessions():
    return shelve.open("sessions.db")  # expect: DJ-PY-004@medium
