# ruff: noqa

"""Signing and encryption keys written as literals: any literal, however it looks."""
import hashlib
import hmac

import jwt
from cryptography.fernet import Fernet
from itsdangerous import URLSafeTimedSerializer

SIGNING_KEY = "dev"


def issue(payload):
    return jwt.encode(payload, "secret", algorithm="HS256")  # expect: DJ-SEC-006@high


def verify(token):
    return jwt.decode(token, SIGNING_KEY, algorithms=["HS256"])  # expect: DJ-SEC-006@high


def sign(body):
    return hmac.new(b"k3y", body, hashlib.sha256).hexdigest()  # expect: DJ-SEC-006@high


def vault():
    return Fernet(key="q2Vb1nOx0bKJ2m3k7t9yqL5QwP8cR4sT6uV0wX2yZ1A=".encode())  # expect: DJ-SEC-006@high


def serializer():
    return URLSafeTimedSerializer(secret_key="change this")  # expect: DJ-SEC-006@high
