# ruff: noqa

"""Authenticated encryption."""
import os

from Crypto.Cipher import AES
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def encrypt(key, data):
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, data, None)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    return sealed, cipher
