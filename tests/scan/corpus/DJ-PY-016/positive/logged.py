# ruff: noqa

"""Secrets printed or logged."""
import logging
import os
import sys

import boto3
from aws_lambda_powertools import Logger
from azure.keyvault.secrets import SecretClient
from google.cloud import secretmanager

log = logging.getLogger(__name__)
logger = Logger()


def handler(event, context):
    password = os.environ["DB_PASSWORD"]
    print("connecting with", password)  # expect: DJ-PY-016@high
    logging.info("api key: %s", os.getenv("API_KEY"))  # expect: DJ-PY-016@high
    log.debug(f"token={context.secrets['token']}")  # expect: DJ-PY-016@high
    context.log("vault secret", context.secrets.get("stripe_key"))  # expect: DJ-PY-016@high
    secret = boto3.client("secretsmanager").get_secret_value(SecretId="app")["SecretString"]
    logger.info({"message": "loaded", "value": secret})  # expect: DJ-PY-016@high
    logger.append_keys(signing_key=os.environ["SIGNING_KEY"])  # expect: DJ-PY-016@high
    sys.stderr.write("auth token " + os.environ["AUTH_TOKEN"] + "\n")  # expect: DJ-PY-016@high
    vault = SecretClient(vault_url="https://kv.vault.azure.net", credential=None)
    log.info("db: %s", vault.get_secret("db-password").value)  # expect: DJ-PY-016@high
    gcp = secretmanager.SecretManagerServiceClient()
    payload = gcp.access_secret_version(name="projects/p/secrets/s/versions/1").payload.data
    print(payload.decode("utf-8"))  # expect: DJ-PY-016@high
    return {"statusCode": 204}


class Client:
    def __init__(self):
        self.log = logging.getLogger("client")

    def connect(self):
        key = os.environ.get("PRIVATE_KEY")
        self.log.warning("using key %s", key)  # expect: DJ-PY-016@high
