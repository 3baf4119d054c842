def handler(event, context):
    name = event["which"]
    return {"statusCode": 200, "body": str(len(context.secrets[name]))}
