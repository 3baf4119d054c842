# ruff: noqa

"""Weak hashes protecting secrets (high confidence) or of unknown purpose (low)."""
import hashlib

from Crypto.Hash import MD5


def hash_password(password):
    return hashlib.md5(password.encode()).hexdigest()  # expect: DJ-PY-007@high


def handler(event, context):
    token_digest = hashlib.sha1(event["token"].encode()).hexdigest()  # expect: DJ-PY-007@high
    signature = hashlib.new("md5", event["body"].encode())  # expect: DJ-PY-007@high
    etag = hashlib.md5(event["body"].encode()).hexdigest()  # expect: DJ-PY-007@low
    digest = MD5.new(event["secret"].encode())  # expect: DJ-PY-007@high
    return {"etag": etag, "t": token_digest, "s": signature, "d": digest}
