# ruff: noqa

"""Escaping turned off to test the renderer: a test's setting, reported low."""
import aiohttp_jinja2
import jinja2
from aiohttp import web


def make_app_without_escaping():
    app = web.Application()
    aiohttp_jinja2.setup(app, loader=jinja2.DictLoader({"t": "<p>{{ x }}</p>"}), autoescape=False)  # expect: DJ-PY-014@low
    return app
