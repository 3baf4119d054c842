# ruff: noqa

"""Errors logged, generic messages returned."""
import logging

log = logging.getLogger(__name__)


def handler(event, context):
    try:
        return {"statusCode": 200, "body": event["body"]}
    except Exception:
        log.exception("request %s failed", context.request_id)
        return {"statusCode": 500, "body": "internal error"}


def with_type(event, context):
    try:
        return {"statusCode": 200}
    except Exception as e:
        log.error("failed: %s", e)
        return {"statusCode": 500, "body": type(e).__name__}


def helper():
    try:
        return 1
    except ValueError as e:
        return str(e)


def with_formatter(event, context):
    try:
        return {"statusCode": 200}
    except Exception as e:
        return render_problem(e, request_id=context.request_id)
