# ruff: noqa

"""Logging that a secret was used, masked, or logging names that are not secrets."""
import hashlib
import logging
import os

log = logging.getLogger(__name__)


def handler(event, context):
    key = os.environ["API_KEY"]
    log.info("api key loaded (%d characters)", len(key))
    log.info("api key %s...", key[:4])
    log.info("key fingerprint %s", hashlib.sha256(key.encode()).hexdigest()[:8])
    print("secret arn:", os.environ["SECRET_ARN"], "table:", os.environ["TABLE_NAME"])
    context.log("request", event.get("path"))
    log.error("bad request: %s", event["body"])
    return {"statusCode": 204}
