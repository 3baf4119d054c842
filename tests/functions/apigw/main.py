"""A test function behind API Gateway-format triggers.

Answers with the event it got, or, when the request's JSON body holds a
"reply", with that reply as its proxy response (the tests shape it).
"""

import json
import logging

log = logging.getLogger("apigw")


def handler(event, context):
    log.debug("debug line")
    log.info("event version %s", event.get("version"))
    print("printed line")
    try:
        asked = json.loads(event.get("body") or "null")
    except ValueError:
        asked = None
    if isinstance(asked, dict) and "reply" in asked:
        return asked["reply"]
    remaining = context.get_remaining_time_in_millis()
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"event": event, "remaining_ms": remaining}),
    }
