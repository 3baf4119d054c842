"""An http-triggered function that shows the caller everything it was given.

A JSON body with a "respond" member makes it answer with exactly that
{statusCode, headers, body} instead: a function shaping its own HTTP response.
"""

import json


def handler(event, context):
    print("headers seen by the function:", event.get("headers"))
    try:
        asked = json.loads(event.get("body") or "null")
    except ValueError:
        asked = None
    if isinstance(asked, dict) and "respond" in asked:
        return asked["respond"]
    return {"event": event, "principal": context.principal}
