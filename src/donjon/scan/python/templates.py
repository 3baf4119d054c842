"""Template rules: event data as a template's source (DJ-PY-013) and HTML autoescaping
turned off through a framework's wrapper or bypassed with ``Markup`` (DJ-PY-014).

A template engine runs its source as a small program (Jinja2's ``{{ ''.__class__ }}``
reaches Python objects): event data must be a template's variables, never its text.
``render_template("page.html", name=event["name"])`` is safe; ``Template(event["body"])``
is not. Plain ``jinja2.Environment`` without autoescape is Bandit's B701 (DJ-PY-104);
DJ-PY-014 covers what B701 does not see: the wrappers of aiohttp, Flask and Starlette /
FastAPI, ``select_autoescape`` told to skip HTML, ``jinja2.Template`` of HTML (what a
Chalice route returning ``text/html`` uses, Chalice having no template layer of its
own), and ``Markup`` of data from outside (marked safe, so never escaped).
"""

from __future__ import annotations

import ast
import re

from donjon.scan.model import Confidence
from donjon.scan.python.hits import CallSite, Hit, Hits

__all__ = ["check_template_assignment", "check_templates"]

_HIGH, _LOW = Confidence.HIGH, Confidence.LOW

#: Constructors and functions whose first argument is template source (argument name).
_SOURCES = {
    "jinja2.Template": "source",
    "jinja2.environment.Template": "source",
    "flask.render_template_string": "source",
    "quart.render_template_string": "source",
    "mako.template.Template": "text",
    "django.template.Template": "template_string",
    "django.template.base.Template": "template_string",
    "tornado.template.Template": "template_string",
    "chameleon.PageTemplate": "body",
    "chameleon.PageTextTemplate": "body",
    "chameleon.zpt.template.PageTemplate": "body",
    "chameleon.zpt.template.PageTextTemplate": "body",
}
#: Methods of a template environment or engine that compile their argument.
_SOURCE_METHODS = frozenset({"from_string"})
#: Modules whose import says a ``.from_string()`` in the module is a template engine's
#: (other libraries have ``from_string`` constructors too: versions, addresses...).
_ENGINES = (
    "jinja2",
    "django.template",
    "mako",
    "chameleon",
    "tornado.template",
    "flask",
    "quart",
    "aiohttp_jinja2",
    "starlette.templating",
    "fastapi.templating",
)
_JINJA_TEMPLATES = frozenset({"jinja2.Template", "jinja2.environment.Template"})
_WRAPPERS = frozenset(
    {
        "aiohttp_jinja2.setup",
        "starlette.templating.Jinja2Templates",
        "fastapi.templating.Jinja2Templates",
        "jinja2.Environment",
        "jinja2.Template",
    }
)
_SELECT = frozenset({"jinja2.select_autoescape", "jinja2.utils.select_autoescape"})
_MARKUP = frozenset(
    {"markupsafe.Markup", "jinja2.Markup", "jinja2.utils.Markup", "flask.Markup", "quart.Markup"}
)
_ESCAPES = frozenset(
    {
        "markupsafe.escape",
        "markupsafe.Markup.escape",
        "jinja2.escape",
        "flask.escape",
        "html.escape",
        "django.utils.html.escape",
    }
)
_HTML_EXTENSIONS = frozenset({"html", "htm", "xml", "xhtml", ".html", ".htm", ".xml", ".xhtml"})
#: An HTML element, written as HTML is (lower case), not any markup: XML response
#: templates (``<Code>``, ``<Message>``) are not rendered by browsers.
_HTML = re.compile(
    r"<(?:!(?i:doctype)\s+(?i:html)|html|head|body|title|div|span|p|a|b|i|em|strong|h[1-6]"
    r"|ul|ol|li|table|tr|td|th|form|input|textarea|button|img|script|style|br|hr|pre|code"
    r"|section|article|nav|main|header|footer|label|select|option)[\s/>]"
)


def _template_source(site: CallSite, qual: str) -> None:
    if qual in _SOURCES:
        source, what = site.arg(0, _SOURCES[qual]), f"{qual}()"
    elif site.method in _SOURCE_METHODS:
        source, what = site.arg(0, "source"), f".{site.method}()"
    else:
        return
    if source is None or source.const:
        return
    engine = qual in _SOURCES or any(site.imports.imports(m) for m in _ENGINES)
    if source.taint is not None:
        site.report(
            "DJ-PY-013",
            _HIGH if engine else _LOW,
            f"event data is the template source of {what}: it can run code in the engine",
            value=source,
            sink_note=f"compiled as a template by {what}",
        )
    elif source.built:
        site.report("DJ-PY-013", _LOW, f"the template source of {what} is built from variables")


def _literal_strings(node: ast.expr | None) -> set[str] | None:
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        items = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        return {str(i).lower() for i in items}
    return None


def _select_autoescape(site: CallSite) -> None:
    disabled = _literal_strings(site.arg_node(1, "disabled_extensions")) or set()
    enabled = _literal_strings(site.arg_node(0, "enabled_extensions"))
    if disabled & _HTML_EXTENSIONS:
        names = ", ".join(sorted(disabled & _HTML_EXTENSIONS))
        site.report("DJ-PY-014", _HIGH, f"select_autoescape() turns escaping off for {names}")
    elif enabled is not None and not enabled & {"html", "htm", ".html", ".htm"}:
        site.report("DJ-PY-014", _HIGH, "select_autoescape() escapes no HTML template")


def _wrapper(site: CallSite, qual: str) -> None:
    if qual == "jinja2.Environment":
        return  # autoescape=False or missing: Bandit's B701 (DJ-PY-104)
    if site.keyword_is("autoescape", False):
        site.report("DJ-PY-014", _HIGH, f"{qual}(autoescape=False) renders HTML unescaped")
    elif qual in _JINJA_TEMPLATES and site.keyword_node("autoescape") is None:
        source = site.arg(0, "source")
        if source is not None and source.prefix is not None and _HTML.search(source.prefix):
            site.report(
                "DJ-PY-014",
                _HIGH,
                f"{qual}() of HTML without autoescape=True renders its variables unescaped",
            )


def _escaped(node: ast.expr, site: CallSite) -> bool:
    """Text whose every variable part went through an escaping function."""
    match node:
        case ast.Constant():
            return True
        case ast.JoinedStr(values=parts):
            return all(_escaped(p, site) for p in parts)
        case ast.FormattedValue(value=inner):
            return _escaped(inner, site)
        case ast.BinOp(op=ast.Add(), left=left, right=right):
            return _escaped(left, site) and _escaped(right, site)
        case ast.Call(func=func):
            return site.imports.qualname(func) in _ESCAPES
    return False


def _markup(site: CallSite, qual: str) -> None:
    value, node = site.arg(0, "base"), site.arg_node(0, "base")
    if value is None or node is None or value.const or _escaped(node, site):
        return
    if value.taint is not None:
        site.report(
            "DJ-PY-014",
            _HIGH,
            f"event data is marked safe HTML by {qual}(): it is never escaped",
            value=value,
            sink_note=f"marked safe by {qual}()",
        )
    elif value.built:
        site.report("DJ-PY-014", _LOW, f"{qual}() marks text built from variables as safe HTML")


def _options_update(site: CallSite) -> None:
    func = site.node.func
    if not (
        site.method == "update"
        and isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Attribute)
        and func.value.attr == "jinja_options"
    ):
        return
    first = site.arg_node(0)
    if site.keyword_is("autoescape", False) or (first is not None and _turns_off(first)):
        site.report("DJ-PY-014", _HIGH, "Flask's jinja_options turn autoescaping off")


def check_templates(site: CallSite, qual: str) -> None:
    """Run the template rules on one call."""
    _template_source(site, qual)
    if qual in _WRAPPERS:
        _wrapper(site, qual)
    elif qual in _SELECT:
        _select_autoescape(site)
    elif qual in _MARKUP:
        _markup(site, qual)
    elif site.method == "update":
        _options_update(site)


def _turns_off(node: ast.expr) -> bool:
    """``{"autoescape": False, ...}`` or ``dict(autoescape=False, ...)``."""
    if isinstance(node, ast.Dict):
        return any(
            isinstance(k, ast.Constant)
            and k.value == "autoescape"
            and isinstance(v, ast.Constant)
            and v.value is False
            for k, v in zip(node.keys, node.values, strict=True)
        )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return any(
            kw.arg == "autoescape"
            and isinstance(kw.value, ast.Constant)
            and kw.value.value is False
            for kw in node.keywords
        )
    return False


def check_template_assignment(target: ast.Attribute, value: ast.expr, hits: Hits) -> None:
    """``app.jinja_env.autoescape = False``; ``app.jinja_options = {"autoescape": False}``."""
    off = (
        target.attr == "autoescape" and isinstance(value, ast.Constant) and value.value is False
    ) or (target.attr == "jinja_options" and _turns_off(value))
    if off:
        message = f"{ast.unparse(target)} turns Jinja2's autoescaping off"
        hits.add(Hit("DJ-PY-014", target.lineno, target.col_offset + 1, _HIGH, message))
