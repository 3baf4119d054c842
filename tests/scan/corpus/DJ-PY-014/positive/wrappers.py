# ruff: noqa

"""Autoescaping turned off through the frameworks' wrappers."""
import aiohttp_jinja2
import jinja2
from aiohttp import web
from fastapi.templating import Jinja2Templates as FastTemplates
from flask import Flask
from starlette.templating import Jinja2Templates

app = Flask(__name__)
app.jinja_env.autoescape = False  # expect: DJ-PY-014@high
app.jinja_options = {"autoescape": False, "trim_blocks": True}  # expect: DJ-PY-014@high
app.jinja_options.update(autoescape=False)  # expect: DJ-PY-014@high
app.jinja_options.update({"autoescape": False})  # expect: DJ-PY-014@high

aio = web.Application()
aiohttp_jinja2.setup(aio, loader=jinja2.FileSystemLoader("templates"), autoescape=False)  # expect: DJ-PY-014@high

templates = Jinja2Templates(directory="templates", autoescape=False)  # expect: DJ-PY-014@high
fast_templates = FastTemplates(directory="templates", autoescape=False)  # expect: DJ-PY-014@high

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader("templates"),
    autoescape=jinja2.select_autoescape(disabled_extensions=("html", "txt")),  # expect: DJ-PY-014@high
)
mail_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader("mail"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("xml",)),  # expect: DJ-PY-014@high
)
