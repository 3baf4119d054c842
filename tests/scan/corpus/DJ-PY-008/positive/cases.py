# ruff: noqa

"""Broken ciphers and ECB mode."""
from Crypto.Cipher import AES, ARC4, DES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def encrypt(key, data):
    cipher = DES.new(key, DES.MODE_CBC)  # expect: DJ-PY-008@high
    stream = ARC4.new(key)  # expect: DJ-PY-008@high
    block = AES.new(key, AES.MODE_ECB)  # expect: DJ-PY-008@high
    legacy = Cipher(algorithms.TripleDES(key), modes.CBC(bytes(8)))  # expect: DJ-PY-008@high
    ecb = Cipher(algorithms.AES(key), modes.ECB())  # expect: DJ-PY-008@high
    return cipher, stream, block, legacy, ecb
