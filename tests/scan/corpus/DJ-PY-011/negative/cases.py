# ruff: noqa

"""Not SSRF: the scheme and host are fixed, event data only in the path, query or body."""
import os
import urllib.request

from urllib.parse import urlparse

import boto3
import httpx
import requests

API = "https://api.example.com"
ALLOWED_HOSTS = {"api.example.com", "hooks.example.com"}
HOSTS = {"eu": "https://eu.example.com/", "us": "https://us.example.com/"}
cache = {}


def handler(event, context):
    item = event["pathParameters"]["id"]
    requests.get("https://api.example.com/items/" + item, timeout=5)
    requests.get(f"{API}/items/{item}", timeout=5)
    requests.get(API + "/search", params={"q": event["q"]}, timeout=5)
    requests.post(API + "/hook", json=event, data=None, headers={"X-Id": item}, timeout=5)
    requests.get("https://api.example.com/items?id=%s" % item, timeout=5)
    requests.get("https://api.example.com/{}/detail".format(item), timeout=5)
    urllib.request.urlopen(os.environ["STATUS_URL"], timeout=5)
    request = urllib.request.Request(API + "/items/" + item, method="DELETE")
    urllib.request.urlopen(request, timeout=5)
    with httpx.Client(base_url=API, timeout=5) as client:
        client.get(f"/items/{item}")
        client.post("/orders", json={"item": item})
    region = event["region"]
    if region not in HOSTS:
        return {"statusCode": 400}
    requests.get(HOSTS[region] + "health", timeout=5)
    requests.get("https://" + region + ".example.com/", timeout=5)
    cache.get(event["key"])
    boto3.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT"))
    return {"statusCode": 200}


def fetch(event, context):
    url = event["url"]
    if urlparse(url).hostname not in ALLOWED_HOSTS:
        return {"statusCode": 400}
    return requests.get(url, timeout=5).text


def check(url):
    return requests.head(url, timeout=5).ok
