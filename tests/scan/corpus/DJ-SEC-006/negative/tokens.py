# ruff: noqa

"""Keys read at run time, verification helpers, and functions that only share a name."""
import hashlib
import hmac
import os

import jwt


def issue(payload, context):
    return jwt.encode(payload, context.secrets["jwt-key"], algorithm="HS256")


def verify(token, public_key):
    return jwt.decode(token, key=public_key, algorithms=["RS256"])


def sign(body):
    key = os.environ["WEBHOOK_KEY"].encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def same(a, b):
    return hmac.compare_digest(a, b)


def encode(payload, codec):
    return payload.encode(codec)


def checksum(body):
    return hashlib.sha256(b"orders:" + body).hexdigest(), encode("text", "utf-8")
