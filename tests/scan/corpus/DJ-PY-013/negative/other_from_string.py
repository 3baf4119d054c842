# ruff: noqa

"""from_string() constructors fed constants, in a module with a template engine."""
from jinja2 import Environment, select_autoescape
from packaging.version import Version

env = Environment(autoescape=select_autoescape())
BANNER = env.from_string("<p>{{ text }}</p>")


def handler(event, context):
    return {"body": BANNER.render(text=event["text"]), "v": str(Version(event["v"]))}
