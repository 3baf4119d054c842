# ruff: noqa

"""Verification on, or pointed at a private CA."""
import ssl

import requests


def handler(event, context):
    requests.get("https://api.internal/health", timeout=5)
    requests.get("https://api.internal/health", verify="/etc/ssl/internal-ca.pem", timeout=5)
    ctx = ssl.create_default_context()
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return {"ctx": ctx}
