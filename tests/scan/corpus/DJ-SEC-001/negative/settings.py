# ruff: noqa

"""Placeholders, documented examples and references to the vault."""
import os

AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
GITHUB_TOKEN = os.environ["GITHUB_TOKEN"]
STRIPE = "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx"
SLACK = "${SLACK_TOKEN}"


def handler(event, context):
    return charge(event, api_key=context.secrets["stripe-key"])
