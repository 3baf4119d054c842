# ruff: noqa

"""TLS verification turned off."""
import ssl

import httpx
import requests
import urllib3


def handler(event, context):
    requests.get("https://api.internal/health", verify=False, timeout=5)  # expect: DJ-PY-006@high
    with httpx.Client(verify=False, timeout=5) as client:  # expect: DJ-PY-006@high
        client.get("https://api.internal")
    ctx = ssl._create_unverified_context()  # expect: DJ-PY-006@high
    ctx2 = ssl.create_default_context()
    ctx2.check_hostname = False  # expect: DJ-PY-006@high
    ctx2.verify_mode = ssl.CERT_NONE  # expect: DJ-PY-006@high
    pool = urllib3.PoolManager(cert_reqs="CERT_NONE")  # expect: DJ-PY-006@high
    session = requests.Session()
    session.verify = False  # expect: DJ-PY-006@high
    return {"ctx": ctx, "pool": pool}
