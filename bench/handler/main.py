"""The bench handler: what every server under test calls (the `hello` example's work)."""


def handler(event, context):
    name = event.get("name", "world")
    return {"message": f"hello, {name}", "request_id": context.request_id}
