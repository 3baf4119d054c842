# ruff: noqa

"""The name a hash is given, or its function's, says what it is for."""
import hashlib


def cache_key_for(token):
    return hashlib.md5(token.encode()).hexdigest()  # expect: DJ-PY-007@low


def handler(event, context):
    etag = hashlib.md5(event["session"].encode()).hexdigest()  # expect: DJ-PY-007@low
    checksum = hashlib.sha1(event["body"].encode()).hexdigest()  # expect: DJ-PY-007@low
    password_hash = hashlib.sha1(event["pw"].encode()).hexdigest()  # expect: DJ-PY-007@high
    sig = hashlib.md5((event["body"] + "key").encode()).hexdigest()  # expect: DJ-PY-007@high
    reset_token = hashlib.md5(event["email"].encode()).hexdigest()  # expect: DJ-PY-007@high
    return {"etag": etag, "c": checksum, "p": password_hash, "s": sig, "r": reset_token}
