# ruff: noqa

"""A Chalice route serving HTML through jinja2 directly (Chalice has no template layer)."""
import jinja2
from chalice import Chalice, Response

app = Chalice(app_name="greeter")
PAGE = jinja2.Template("<html><body><h1>Hello {{ name }}</h1></body></html>")  # expect: DJ-PY-014@high


@app.route("/hello")
def hello():
    name = app.current_request.query_params["name"]
    row = jinja2.Template("<tr><td>{{ name }}</td></tr>").render(name=name)  # expect: DJ-PY-014@high
    return Response(
        body=PAGE.render(name=name) + row,
        status_code=200,
        headers={"Content-Type": "text/html"},
    )
