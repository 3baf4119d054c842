# ruff: noqa

"""Public material is not secret."""
PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
AAAA
-----END PUBLIC KEY-----"""
CERT_HEADER = "-----BEGIN CERTIFICATE-----"
