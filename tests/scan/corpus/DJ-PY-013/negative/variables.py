# ruff: noqa

"""Event data as render variables of constant templates: not template injection."""
import jinja2
from flask import Flask, render_template, render_template_string, request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from mako.template import Template as MakoTemplate

app = Flask(__name__)
env = Environment(loader=FileSystemLoader("templates"), autoescape=select_autoescape())
GREETING = jinja2.Template("Hello {{ name }}", autoescape=True)


@app.route("/hello")
def hello():
    return render_template("hello.html", name=request.args["name"])


@app.route("/inline")
def inline():
    return render_template_string("<p>Hello {{ name }}</p>", name=request.args["name"])


def handler(event, context):
    page = env.get_template("page.html").render(title=event["title"])
    text = GREETING.render(name=event["name"])
    snippet = env.from_string("{{ a }} and {{ b }}").render(a=event["a"], b=event["b"])
    mail = MakoTemplate("Dear ${name}").render(name=event["name"])
    return {"statusCode": 200, "body": page + text + snippet + mail}
