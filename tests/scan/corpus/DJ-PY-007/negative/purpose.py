# ruff: noqa

"""Checksums and cache keys that say so; secrets hashed with strong functions."""
import hashlib


def cache_key_for(token):
    return hashlib.md5(token.encode(), usedforsecurity=False).hexdigest()


def handler(event, context):
    password_hash = hashlib.scrypt(event["pw"].encode(), salt=b"s" * 16, n=2**14, r=8, p=1)
    sig = hashlib.sha256(event["body"].encode()).hexdigest()
    return {"p": password_hash, "s": sig}
