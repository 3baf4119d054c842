# ruff: noqa

from jinja2 import Environment, FileSystemLoader

env = Environment(loader=FileSystemLoader("templates"), autoescape=False)  # expect: DJ-PY-104
plain = Environment(loader=FileSystemLoader("templates"))  # expect: DJ-PY-104
