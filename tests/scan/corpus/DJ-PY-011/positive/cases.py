# ruff: noqa

"""Server-side request forgery: event data chooses where a request goes."""
import http.client
import json
import urllib.request
from urllib.parse import urljoin, urlparse

import aiohttp
import boto3
import httpx
import requests
import urllib3
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from flask import Flask, request

app = Flask(__name__)
pool = urllib3.PoolManager()


def handler(event, context):
    url = event["queryStringParameters"]["url"]
    requests.get(url, timeout=5)  # expect: DJ-PY-011@high
    requests.post("https://" + event["host"] + "/hook", json={}, timeout=5)  # expect: DJ-PY-011@high
    requests.request("GET", url, timeout=5)  # expect: DJ-PY-011@high
    session = requests.Session()
    session.get(f"http://{event['host']}:8080/status", timeout=5)  # expect: DJ-PY-011@high
    requests.Session().put(url, data=b"", timeout=5)  # expect: DJ-PY-011@high
    httpx.get(url, timeout=5)  # expect: DJ-PY-011@high
    with httpx.Client(timeout=5) as client:
        client.post(url, json={"a": 1})  # expect: DJ-PY-011@high
    api = httpx.Client(base_url=event["api"], timeout=5)  # expect: DJ-PY-011@high
    urllib.request.urlopen(url, timeout=5)  # expect: DJ-PY-011@high
    req = urllib.request.Request("https://%s/api" % event["host"])  # expect: DJ-PY-011@high
    pool.request("GET", url, timeout=5)  # expect: DJ-PY-011@high
    conn = http.client.HTTPSConnection(event["host"], timeout=5)  # expect: DJ-PY-011@high
    s3 = boto3.client("s3", endpoint_url=event["endpoint"])  # expect: DJ-PY-011@high
    requests.get(urljoin("https://api.example.com/", event["path"]), timeout=5)  # expect: DJ-PY-011@high
    requests.get("https://api.example.com" + event["path"], timeout=5)  # expect: DJ-PY-011@high
    return {"api": str(api), "req": str(req), "conn": str(conn), "s3": str(s3)}


def webhook(event, context):
    body = json.loads(event["body"])
    callback = body.get("callback_url")
    return requests.post(callback, json={"ok": True}, timeout=5).status_code  # expect: DJ-PY-011@high


def proxy(event, context):
    request_event = APIGatewayProxyEvent(event)
    target = request_event.get_query_string_value(name="target", default_value="")
    return requests.get(target, timeout=5).text  # expect: DJ-PY-011@high


async def fetch(event, context):
    async with httpx.AsyncClient(timeout=5) as client:
        await client.get(event["url"])  # expect: DJ-PY-011@high
    async with aiohttp.ClientSession() as session:
        async with session.get(event["url"], timeout=5) as resp:  # expect: DJ-PY-011@high
            return await resp.text()


def unchecked(event, context):
    url = event["url"]
    if urlparse(url).path not in ("/a", "/b"):
        return None
    return requests.get(url, timeout=5).text  # expect: DJ-PY-011@high


@app.route("/preview")
def preview():
    target = request.args["u"]
    return requests.get(target, timeout=5).text  # expect: DJ-PY-011@high
