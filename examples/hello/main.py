"""The smallest function: greet the caller."""


def handler(event, context):
    name = event.get("name", "world")
    return {"message": f"hello, {name}", "request_id": context.request_id}
