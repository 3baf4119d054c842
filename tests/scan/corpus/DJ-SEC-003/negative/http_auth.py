# ruff: noqa

"""Credentials read from where they live, and headers that hold no credential."""
import os

import requests
from requests.auth import HTTPBasicAuth

CHALLENGE = 'Basic realm="orders"'


def call(url, context):
    token = context.secrets["api-token"]
    requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    requests.get(url, headers={"Authorization": "Bearer " + token}, timeout=5)
    requests.get(url, auth=("admin", os.environ["ADMIN_PASSWORD"]), timeout=5)
    return HTTPBasicAuth("admin", context.secrets["admin-password"])


def mail(smtp, context):
    smtp.login("bot@example.com", context.secrets["smtp-password"])
