# ruff: noqa

"""Template source from the HTTP request of Flask and Chalice routes."""
from chalice import Chalice
from flask import Flask, render_template_string, request
from jinja2 import Environment, select_autoescape

app = Flask(__name__)
api = Chalice(app_name="cards")
env = Environment(autoescape=select_autoescape())


@app.route("/preview", methods=["POST"])
def preview():
    return render_template_string(request.form["template"])  # expect: DJ-PY-013@high


@app.route("/hello/<name>")
def hello(name):
    return render_template_string("<p>Hello " + name + "</p>")  # expect: DJ-PY-013@high


@api.route("/card", methods=["POST"])
def card():
    body = api.current_request.json_body
    return env.from_string(body["layout"]).render(user="x")  # expect: DJ-PY-013@high
