# ruff: noqa

"""Annotations, lookups, flags and names: the values are not secrets."""
import os
from typing import Optional


class Settings:
    secret: Optional[str] = None
    password: str = ""
    api_key: str | None = None


DB_PASSWORD = os.getenv("DB_PASSWORD")
API_KEY = os.environ["API_KEY"]
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders"
PASSWORD_PARAMETER = "/orders/prod/db-password"
SECRET_HEADER = "X-Hub-Signature"
USE_SECRET = "true"
password_policy = {"password": None, "min_password_length": "12"}


def connect(make_client, region):
    return make_client(region=region, password=os.environ["DB_PASSWORD"], token=None)
