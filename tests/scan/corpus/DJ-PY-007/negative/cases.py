# ruff: noqa

"""Strong hashes, and weak ones declared as checksums."""
import hashlib
import os


def handler(event, context):
    etag = hashlib.md5(event["body"].encode(), usedforsecurity=False).hexdigest()
    digest = hashlib.sha256(event["token"].encode()).hexdigest()
    checksum = hashlib.new("sha256", event["body"].encode())
    key = hashlib.scrypt(event["password"].encode(), salt=os.urandom(16), n=2**14, r=8, p=1)
    return {"etag": etag, "digest": digest, "c": checksum, "k": key}
