# ruff: noqa

"""Autoescaping left on (the wrappers' default) or turned on; Markup of constants or
Markup.format, which escapes its arguments."""
import aiohttp_jinja2
import jinja2
from aiohttp import web
from chalice import Chalice, Response
from flask import Flask, request
from markupsafe import Markup, escape
from starlette.templating import Jinja2Templates

app = Flask(__name__)
app.jinja_env.autoescape = True
app.jinja_options = {"trim_blocks": True}
app.jinja_options.update(lstrip_blocks=True)

aio = web.Application()
aiohttp_jinja2.setup(aio, loader=jinja2.FileSystemLoader("templates"))
templates = Jinja2Templates(directory="templates")
env = jinja2.Environment(
    loader=jinja2.FileSystemLoader("templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html", "xml"), disabled_extensions=("txt",)),
)
RESPONSE = jinja2.Template("<ErrorResponse><Code>{{ code }}</Code><Message>{{ m }}</Message></ErrorResponse>")
LISTING = jinja2.Template('<?xml version="1.0"?><ListQueuesResponse>{{ q }}</ListQueuesResponse>')
PLAIN = jinja2.Template("Hello {{ name }}, your order shipped.")
SAFE_PAGE = jinja2.Template("<p>Hello {{ name }}</p>", autoescape=True)
BREAK = Markup("<br>")
api = Chalice(app_name="greeter")


@app.route("/bio")
def bio():
    return Markup("<b>{}</b>").format(request.args["bio"]) + escape(request.args["x"])


@api.route("/hello")
def hello():
    name = api.current_request.query_params["name"]
    return Response(body=SAFE_PAGE.render(name=name), headers={"Content-Type": "text/html"})


def handler(event, context):
    label = Markup(f"<label>{escape(event['label'])}</label>")
    return {"statusCode": 200, "body": label + Markup("<br>") + escape(event["x"])}
