"""A plain AWS Lambda handler: nothing in it knows of Donjon."""

import json
import logging
import os

logger = logging.getLogger(__name__)


def lambda_handler(event, context):
    logger.info("request %s for %s", context.aws_request_id, context.function_name)
    logger.debug("not shown: the function's log_level is INFO")
    facts = {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "env_function_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "env_log_level": os.environ.get("AWS_LAMBDA_LOG_LEVEL"),
    }
    if "httpMethod" not in event:  # invoked directly (the invoke API)
        return facts
    # Called through an http trigger with event_format: apigw-v1.
    name = (event.get("queryStringParameters") or {}).get("name", "world")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "multiValueHeaders": {"x-greeting": ["hello", name]},
        "body": json.dumps({"greeting": f"hello {name}", "path": event["path"], **facts}),
        "isBase64Encoded": False,
    }
