# ruff: noqa

"""Plain-http endpoints with verification left alone: nothing to report."""
import boto3
import requests


def handler(event, context):
    requests.get("http://localhost:4566/health", timeout=5)
    sqs = boto3.client("sqs", endpoint_url="http://localhost:4566")
    requests.get("https://api.example.com", verify=True, timeout=5)
    return {"sqs": sqs}
