# ruff: noqa

"""Secrets put in an HTTP response body by a web framework."""
import os

from chalice import Chalice, Response
from flask import Flask, jsonify

app = Flask(__name__)
api = Chalice(app_name="keys")


@app.route("/debug")
def debug():
    return jsonify(env="prod", key=os.environ["OPENAI_API_KEY"])  # expect: DJ-PY-015@high


@api.route("/config")
def config():
    token = os.environ["SLACK_BOT_TOKEN"]
    return Response(body={"token": token}, status_code=200)  # expect: DJ-PY-015@high
