"""A function granted egress that calls its API with requests, configured by nothing but
the standard proxy variables the platform sets."""

import os

import requests

CA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ca.pem")


def handler(event, context):
    try:
        r = requests.get(event["url"], verify=CA, timeout=15)
    except requests.RequestException as e:
        return {"status": None, "error": f"{type(e).__name__}: {e}"}
    return {"status": r.status_code, "reply": r.json() if r.ok else None}
