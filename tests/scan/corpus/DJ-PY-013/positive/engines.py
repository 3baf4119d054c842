# ruff: noqa

"""Event data compiled as a template, one case per engine."""
import jinja2
import tornado.template
from chameleon import PageTemplate
from django.template import Template as DjangoTemplate
from jinja2 import Environment, select_autoescape
from mako.template import Template as MakoTemplate

env = Environment(autoescape=select_autoescape())


def handler(event, context):
    greeting = jinja2.Template(event["template"]).render()  # expect: DJ-PY-013@high
    card = env.from_string("<h1>" + event["title"] + "</h1>").render()  # expect: DJ-PY-013@high
    mail = MakoTemplate(event["body"]).render()  # expect: DJ-PY-013@high
    page = DjangoTemplate(f"Hello {event['name']}")  # expect: DJ-PY-013@high
    text = tornado.template.Template(event["layout"]).generate()  # expect: DJ-PY-013@high
    html = PageTemplate(event["page"])()  # expect: DJ-PY-013@high
    return {"statusCode": 200, "body": greeting + card + mail + text.decode() + html}


def build(source, name):
    return jinja2.Template("Dear " + source).render(name=name)  # expect: DJ-PY-013@low
