# ruff: noqa

"""Tokens that are not credentials, patterns for credentials, and empty defaults."""
import os

PAD_TOKEN = "[PAD]"
END_TOKEN = "<|endoftext|>"
_DEFAULT_TOKEN = "_sa_default"
NEXT_TOKEN = "eyJvZmZzZXQiOjEwMH0eyJv"


class Detector:
    secret = r"([a-zA-Z0-9_\-]{44}(?![a-zA-Z0-9_\-]))"
    password = r"([a-f0-9]{48}(?![a-f0-9]))"


API_TOKEN = os.getenv("API_TOKEN", "")
TOKEN_FILE = os.getenv("TOKEN_FILE", "/run/secrets/api-token-file")
REGION = os.environ.get("AWS_REGION", "eu-west-1")
