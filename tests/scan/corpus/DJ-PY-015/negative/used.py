# ruff: noqa

"""Secrets used (clients, headers, connections), masked, or names that are not secrets."""
import hashlib
import json
import os

import boto3
import psycopg2
import requests
from flask import Flask, jsonify

app = Flask(__name__)


def masked(event, context):
    key = os.environ["API_KEY"]
    return {"statusCode": 200, "body": json.dumps({"key": key[:4] + "...", "length": len(key)})}


def fingerprint(event, context):
    token = context.secrets["webhook_token"]
    return {"statusCode": 200, "body": hashlib.sha256(token.encode()).hexdigest()[:8]}


def query(event, context):
    conn = psycopg2.connect(host="db", password=os.environ["DB_PASSWORD"])
    rows = conn.cursor().execute("SELECT 1")
    return {"statusCode": 200, "body": json.dumps(rows)}


def call_api(event, context):
    token = os.getenv("GITHUB_TOKEN")
    response = requests.get(
        "https://api.github.com/user", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    return {"statusCode": response.status_code, "body": response.text}


def client(event, context):
    s3 = boto3.client(
        "s3",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    return {"statusCode": 200, "body": json.dumps(s3.list_buckets()["Buckets"])}


def names(event, context):
    return {
        "table": os.environ["TABLE_NAME"],
        "secret": os.environ["SECRET_ARN"],
        "header": os.getenv("API_KEY_HEADER"),
        "author": os.environ.get("AUTHOR"),
        "auth_domain": os.environ["COGNITO_AUTH_DOMAIN"],
        "rotation": os.environ["SECRET_ROTATION_LAMBDA_ARN"],
        "token_url": os.environ["OAUTH_TOKEN_URL"],
    }


def plain_parameter(event, context):
    ssm = boto3.client("ssm")
    return {"body": ssm.get_parameter(Name="/app/feature-flag")["Parameter"]["Value"]}


@app.route("/status")
def status():
    configured = bool(os.environ.get("API_KEY"))
    return jsonify(configured=configured, region=os.environ["AWS_REGION"])


def load_password():
    return os.environ["DB_PASSWORD"]


def run_tool(event, context):
    env = {k: v for k, v in os.environ.items() if k.startswith("APP_")}
    names = sorted(os.environ)
    return {"statusCode": 200, "body": json.dumps({"count": len(env), "first": names[:1]})}
