"""An http-triggered function: answers with what it was sent."""

import json


def handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({
            "method": event["method"],
            "path": event["path"],
            "query": event["query"],
            "body": event["body"],
            # The caller as the gateway authenticated it. Not event["principal"]: anyone
            # allowed to invoke the function directly chooses the whole event.
            "caller": context.principal,
        }),
    }
