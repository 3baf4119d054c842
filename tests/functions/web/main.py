"""A test function behind http triggers: shapes its response from the query."""

import json


def handler(event, context):
    q = event["query"]
    if q.get("raw") == "1":
        return {"plain": True, "principal": event["principal"]}
    if q.get("bad") == "1":
        return {"statusCode": "teapot"}
    return {
        "statusCode": int(q.get("status", "200")),
        "headers": {"content-type": "application/json", "x-fn": "web"},
        "body": json.dumps(
            {
                "method": event["method"],
                "path": event["path"],
                "headers": event["headers"],
                "body": event["body"],
                "b64": event["is_base64_encoded"],
                "principal": event["principal"],
            }
        ),
    }
