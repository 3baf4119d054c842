# ruff: noqa

"""Not unsafe: data-only formats, safe YAML loaders, serializing (not loading)."""
import json
import pickle

import yaml


def handler(event, context):
    data = json.loads(event["body"])
    cfg = yaml.safe_load(event["config"])
    cfg2 = yaml.load(event["config"], Loader=yaml.SafeLoader)
    cfg3 = yaml.load(event["config"], yaml.CSafeLoader)
    blob = pickle.dumps(data)
    default = pickle.loads(b"\x80\x04K\x01.")
    return {"data": data, "cfg": [cfg, cfg2, cfg3], "blob": len(blob), "d": default}
