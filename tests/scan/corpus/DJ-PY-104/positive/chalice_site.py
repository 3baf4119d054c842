# ruff: noqa

"""A Chalice route serving HTML from a jinja2 environment built without autoescape."""
import jinja2 as jinja
from chalice import Chalice, Response

app = Chalice(app_name="site")


@app.route("/article")
def article():
    env = jinja.Environment(loader=jinja.FileSystemLoader("templates"))  # expect: DJ-PY-104
    title = app.current_request.query_params.get("title")
    page = env.get_template("article.html").render(title=title)
    return Response(body=page, status_code=200, headers={"Content-Type": "text/html"})
