# ruff: noqa

"""Secrets from the environment, the vault and secrets services returned to the caller."""
import json
import os

import boto3
from aws_lambda_powertools.utilities import parameters


def env_password(event, context):
    password = os.environ["DB_PASSWORD"]
    return {"statusCode": 200, "body": json.dumps({"password": password})}  # expect: DJ-PY-015@high


def env_key(event, context):
    key = os.getenv("API_KEY")
    return {"statusCode": 200, "body": f"your key is {key}"}  # expect: DJ-PY-015@high


def env_get(event, context):
    config = {"stripe": os.environ.get("STRIPE_SECRET_KEY", ""), "region": "eu-west-1"}
    return config  # expect: DJ-PY-015@high


def vault(event, context):
    return {"statusCode": 200, "body": context.secrets["db_password"]}  # expect: DJ-PY-015@high


def _describe(token):
    return "token=" + token.strip()


def vault_get(event, context):
    token = context.secrets.get("github_token")
    return {"statusCode": 200, "body": _describe(token)}  # expect: DJ-PY-015@high


def secrets_manager(event, context):
    client = boto3.client("secretsmanager")
    secret = client.get_secret_value(SecretId=os.environ["SECRET_ARN"])["SecretString"]
    creds = json.loads(secret)
    return {"statusCode": 200, "body": json.dumps({"user": creds["username"], "pw": creds["password"]})}  # expect: DJ-PY-015@high


def ssm(event, context):
    client = boto3.client("ssm")
    value = client.get_parameter(Name="/app/db", WithDecryption=True)["Parameter"]["Value"]
    body = {}
    body.update(connection=value)
    return {"statusCode": 200, "body": json.dumps(body)}  # expect: DJ-PY-015@high


def powertools(event, context):
    return {"statusCode": 200, "body": parameters.get_secret("app/signing-key")}  # expect: DJ-PY-015@high


def debug_environment(event, context):
    return {"statusCode": 200, "body": json.dumps(dict(os.environ))}  # expect: DJ-PY-015@low
