# ruff: noqa

"""Framework signing keys read at run time, or left unset."""
import os

from flask import Flask

SECRET_KEY = os.environ["SECRET_KEY"]

app = Flask(__name__)
app.secret_key = os.environ.get("FLASK_SECRET_KEY", "")
app.config["SECRET_KEY"] = SECRET_KEY


def configure(context):
    app.config.from_mapping(SECRET_KEY=context.secrets["flask-key"], TESTING=False)


class Config:
    SECRET_KEY = ""
