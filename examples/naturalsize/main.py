"""A function with a dependency (humanize), vendored into the bundle at deploy."""

import humanize


def handler(event, context):
    return {"size": humanize.naturalsize(event["bytes"]), "humanize": humanize.__version__}
