def handler(event, context):
    key = context.secrets["stripe-key"]
    return {"statusCode": 200, "body": str(len(key))}
