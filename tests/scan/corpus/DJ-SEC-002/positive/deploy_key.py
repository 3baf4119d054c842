# ruff: noqa

"""A private key in code (made up; the body is not a key)."""
DEPLOY_KEY = """-----BEGIN OPENSSH PRIVATE KEY-----
AAAA
-----END OPENSSH PRIVATE KEY-----"""
