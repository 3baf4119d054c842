# ruff: noqa

"""TLS verification off: against https or an unknown endpoint it stays at gate level; against
a plain-http endpoint there is nothing to verify (reported, low confidence)."""
import boto3
import requests

LOCAL = "http://localhost:4566"


def handler(event, context):
    requests.get("http://localhost:4566/health", verify=False, timeout=5)  # expect: DJ-PY-006@low
    s3 = boto3.client("s3", endpoint_url="http://localhost:4566", verify=False)  # expect: DJ-PY-006@low
    requests.post(f"{LOCAL}/queue", json={}, verify=False, timeout=5)  # expect: DJ-PY-006@low
    requests.get("https://billing.example.com/api", verify=False, timeout=5)  # expect: DJ-PY-006@high
    requests.get(event["callback"], verify=False, timeout=5)  # expect: DJ-PY-006@high DJ-PY-011@high
    kms = boto3.client("kms", endpoint_url="https://kms.internal", verify=False)  # expect: DJ-PY-006@high
    return {"s3": s3, "kms": kms}
