def signing_key(context):
    return context.secrets.get('webhook-signing', "")
