# ruff: noqa

"""A nonce drawn from the OS's randomness, shortened through SHA-1: its strength is
the randomness, and a collision in the hash costs nothing: low, not gate level."""
import hashlib
import os


def make_client_nonce(counter: int) -> str:
    seed = str(counter).encode() + os.urandom(16)
    return hashlib.sha1(seed).hexdigest()[:16]  # expect: DJ-PY-007@low
