# ruff: noqa

"""Data from outside marked as safe HTML: never escaped."""
import markupsafe
from flask import Flask, render_template, request
from markupsafe import Markup

app = Flask(__name__)


@app.route("/profile")
def profile():
    bio = Markup(request.args["bio"])  # expect: DJ-PY-014@high
    return render_template("profile.html", bio=bio)


def handler(event, context):
    title = markupsafe.Markup(f"<h1>{event['title']}</h1>")  # expect: DJ-PY-014@high
    return {"statusCode": 200, "body": str(title)}


def badge(label):
    return Markup("<span class=badge>" + label + "</span>")  # expect: DJ-PY-014@low
