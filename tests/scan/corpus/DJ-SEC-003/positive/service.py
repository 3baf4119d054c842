# ruff: noqa

"""Literal credentials in real code: assignments and credential arguments of calls."""
import boto3

API_SECRET = "k9Jx2mQ8vLp4Rz7WbN3c"  # expect: DJ-SEC-003@medium
LEGACY_PASSWORD = "hunter2"  # expect: DJ-SEC-003@low


def clients(Client, connect):
    """Build the clients.

    Example, as the docs show it: settings = {"password": "Yx7#kQ2!mW9zP"}  # expect: DJ-SEC-003@low
    """
    storage = boto3.client(
        "s3",
        aws_access_key_id="AKIAZDOC9IS0J8HT9LGM",  # expect: DJ-SEC-001
        aws_secret_access_key="Fz9/qL2+kW7pX3mR8vT1nB6",  # expect: DJ-SEC-003@medium
    )
    api = Client(api_key="Zq81x")  # expect: DJ-SEC-003@medium
    db = connect(host="db.internal", auth_token="tK4-77pq")  # expect: DJ-SEC-003@medium
    return storage, api, db


def legacy(connect):
    return connect(user="app", password="postgres")  # expect: DJ-SEC-003@low
