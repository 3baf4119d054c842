"""Secrets that leave the function: returned to the caller (DJ-PY-015) or logged (DJ-PY-016).

A value carries the `secret` label (`values.Value.secret`) when it is read from the
environment under a credential-like name (``os.environ["DB_PASSWORD"]``,
``os.getenv("API_KEY")``), from the vault (``context.secrets[...]``) or from a secrets
service (Secrets Manager's ``get_secret_value``, SSM's ``get_parameter(...,
WithDecryption=True)``, Powertools' ``parameters.get_secret``). Unlike event data, the
label passes only through operations that keep the text: formatting, concatenation,
containers, ``json.dumps``/``base64``, ``str`` methods. Anything else (a hash, ``len()``,
a client built from it, a request sent with it) ends it, and so does masking by a short
slice (``secret[:4] + "..."``). The label reaching an entry point's return value or a
response constructor is a finding, and so is reaching ``print``, ``logging`` or
``context.log``.
"""

from __future__ import annotations

import ast
import re

from donjon.scan.model import Confidence
from donjon.scan.python.hits import CallSite, Hit, Hits
from donjon.scan.python.imports import ImportMap
from donjon.scan.python.values import HOLDING_BUILTINS, Step, Trace, Value

__all__ = [
    "carried_secret",
    "check_leak",
    "check_returned_secret",
    "credential_name",
    "secret_in_subscript",
]

_CREDENTIAL = re.compile(
    r"passw|pwd|secret|token|api_?key|private_?key|credential|access_?key|signing_?key"
    r"|auth_?(?:key|pass|secret)|authorization|bearer"
    r"|client_?key|master_?key|encryption_?key|dsn|conn(?:ection)?_?str",
    re.IGNORECASE,
)
#: Names that mention a credential but hold something about it: where it is, not what.
_ABOUT_CREDENTIAL = re.compile(
    r"(?:^|_)(?:names?|arns?|ids?|url|uri|path|file|region|header|endpoint|ttl|type|len"
    r"|length|expiry|expires|expiration|table|bucket|enabled|host|port|user|username|author"
    r"|provider|version|stage|prefix|kind|mode|algorithm|issuer|audience|scope|domain"
    r"|location|store|service|policy|role|rotation|source|field|param|parameter|pool)$",
    re.IGNORECASE,
)
_VAULT_OWNERS = frozenset({"context", "ctx"})
_ENV_READS = frozenset({"os.getenv", "os.environ.get", "os.environb.get"})
_POWERTOOLS = "aws_lambda_powertools.utilities.parameters."
#: Methods of secrets services' clients that return a secret: AWS Secrets Manager (and its
#: caching client), Azure Key Vault, Google Secret Manager, HashiCorp Vault (hvac).
_SECRET_METHODS = frozenset(
    {
        "get_secret_value",
        "get_secret_string",
        "get_secret_binary",
        "get_secret",
        "access_secret_version",
        "read_secret_version",
    }
)
#: Calls that copy or print the whole environment (and every secret in it).
_WHOLE_ENV = frozenset({"dict", "str", "repr", "json.dumps"})
_KEEPERS = HOLDING_BUILTINS | frozenset(
    {
        "bytearray",
        "json.dumps",
        "json.loads",
        "simplejson.dumps",
        "base64.b64encode",
        "base64.b64decode",
        "base64.urlsafe_b64encode",
        "base64.urlsafe_b64decode",
        "base64.standard_b64encode",
        "base64.b32encode",
        "base64.b16encode",
        "binascii.hexlify",
        "codecs.encode",
        "codecs.decode",
        "urllib.parse.quote",
        "urllib.parse.quote_plus",
        "urllib.parse.urlencode",
        "html.escape",
    }
)
_PREDICATES = frozenset(
    {"count", "find", "rfind", "index", "rindex", "startswith", "endswith", "fromkeys"}
)
#: Methods of str, bytes and dict: what they return is (part of) the text they hold.
_TEXT_METHODS = frozenset(
    m
    for m in (*dir(str), *dir(bytes), *dir(dict))
    if not m.startswith("_") and not m.startswith("is") and m not in _PREDICATES
)
#: Methods whose result also holds their arguments' text.
_EMBEDDING = frozenset({"format", "format_map", "join", "replace", "center", "ljust", "rjust"})
_LOG_METHODS = frozenset(
    {
        "debug",
        "info",
        "warning",
        "warn",
        "error",
        "exception",
        "critical",
        "fatal",
        "log",
        "append_keys",
    }
)
_LOGGER = re.compile(r"_*(?:\w*_)?(?:log|logger)", re.IGNORECASE)
_PRINTS = frozenset({"print", "sys.stdout.write", "sys.stderr.write", "pprint.pprint"})
_RESPONSES = frozenset(
    {
        "flask.jsonify",
        "flask.make_response",
        "flask.Response",
        "quart.jsonify",
        "quart.make_response",
        "quart.Response",
        "werkzeug.Response",
        "werkzeug.wrappers.Response",
        "chalice.Response",
        "chalice.app.Response",
        "aiohttp.web.json_response",
        "aiohttp.web.Response",
        "django.http.HttpResponse",
        "django.http.JsonResponse",
        "sanic.response.json",
        "sanic.response.text",
        "sanic.response.html",
    }
    | {
        f"{pkg}.responses.{cls}"
        for pkg in ("starlette", "fastapi")
        for cls in ("Response", "JSONResponse", "HTMLResponse", "PlainTextResponse")
    }
)
#: Arguments of a response constructor that do not become its body.
_NOT_BODY = frozenset({"headers", "status", "status_code", "media_type", "content_type"})
_MASK_CHARS = 8


def credential_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a credential."""
    return bool(_CREDENTIAL.search(name)) and not _ABOUT_CREDENTIAL.search(name)


def _vault(node: ast.expr) -> bool:
    """``context.secrets``: the function's vault grants."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "secrets"
        and isinstance(node.value, ast.Name)
        and node.value.id in _VAULT_OWNERS
    )


def _source(node: ast.expr | ast.stmt, text: str, *, weak: bool = False) -> Trace:
    """A one-step trace starting at `node`; `weak` when the value may hold no secret."""
    return (Step(node.lineno, node.col_offset + 1, text, weak),)


def _short(node: ast.expr | None) -> bool:
    """A small constant bound (``4``, ``-4``): the slice shows a few characters at most."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int)
        and (0 <= node.value <= _MASK_CHARS)
    )


def _masking(index: ast.expr) -> bool:
    """``[:4]``, ``[-4:]``: a slice short enough to identify a secret, not to reveal it."""
    if not isinstance(index, ast.Slice):
        return False
    lower, upper = index.lower, index.upper
    if upper is not None and (lower is None or _short(lower)):
        return _short(upper) and not isinstance(upper, ast.UnaryOp)
    return (
        upper is None
        and isinstance(lower, ast.UnaryOp)
        and isinstance(lower.op, ast.USub)
        and _short(lower)
    )


def secret_in_subscript(node: ast.Subscript, container: Value, imports: ImportMap) -> Trace | None:
    """The secret label of ``container[index]``: a source, a mask, or the container's."""
    base, index = node.value, node.slice
    if _vault(base):
        return _source(node, f"{ast.unparse(node)}: a secret from the vault")
    if (
        imports.qualname(base) in ("os.environ", "os.environb")
        and isinstance(index, ast.Constant)
        and isinstance(index.value, str)
        and credential_name(index.value)
    ):
        return _source(node, f"os.environ[{index.value!r}]: a secret from the environment")
    if _masking(index):
        return None
    return container.secret


def _call_source(site: CallSite) -> Trace | None:
    node, qual, method = site.node, site.qual or "", site.method
    if qual in _ENV_READS:
        name = site.arg_node(0, "key")
        if (
            isinstance(name, ast.Constant)
            and isinstance(name.value, str)
            and credential_name(name.value)
        ):
            return _source(node, f"{qual}({name.value!r}): a secret from the environment")
        return None
    if qual == "os.environ.copy" or (
        qual in _WHOLE_ENV
        and (first := site.arg_node(0)) is not None
        and site.imports.qualname(first) == "os.environ"
    ):
        # Whether the environment holds a secret depends on where the code runs (Lambda's
        # holds the role's keys; Donjon's sandbox passes none): reported, low confidence.
        text = f"{ast.unparse(node)}: every variable of the environment"
        return _source(node, text, weak=True)
    if method == "get" and isinstance(node.func, ast.Attribute) and _vault(node.func.value):
        return _source(node, f"{ast.unparse(node.func.value)}.get(): a secret from the vault")
    if method in _SECRET_METHODS or qual == f"{_POWERTOOLS}get_secret":
        return _source(node, f"{method or qual}(): a secret from a secrets service")
    decrypted = site.keyword_is("WithDecryption", True) or site.keyword_is("decrypt", True)
    if decrypted and method in ("get_parameter", "get_parameters", "get_parameters_by_path"):
        return _source(node, f"{method}(WithDecryption=True): a secret parameter")
    return None


def carried_secret(site: CallSite) -> Trace | None:
    """The secret label of what a call outside the module returns (see the module doc)."""
    found = _call_source(site)
    if found is not None:
        return found
    values = [*site.args, *site.kwargs.values()]
    if site.qual in _KEEPERS:
        return next((v.secret for v in values if v.secret is not None), None)
    receiver = site.receiver
    if site.method in _TEXT_METHODS and receiver is not None:
        if receiver.secret is not None:
            return receiver.secret
        if site.method in _EMBEDDING:
            return next((v.secret for v in values if v.secret is not None), None)
    return None


def _hit(rule_id: str, at: ast.expr | ast.stmt, message: str, secret: Trace, note: str) -> Hit:
    line, col = at.lineno, at.col_offset + 1
    confidence = Confidence.LOW if secret[0].weak else Confidence.HIGH
    return Hit(rule_id, line, col, confidence, message, trace=(*secret, Step(line, col, note)))


def _logged(site: CallSite, qual: str) -> str | None:
    """What logs in this call (``logger.info``, ``print``...), or None."""
    if qual in _PRINTS:
        return f"{qual}()"
    func = site.node.func
    if site.method not in _LOG_METHODS or not isinstance(func, ast.Attribute):
        return None
    owner = func.value
    if qual.startswith("logging.") or (
        site.method == "log" and isinstance(owner, ast.Name) and owner.id in _VAULT_OWNERS
    ):
        return f"{ast.unparse(func)}()"
    last = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
    return f"{ast.unparse(func)}()" if _LOGGER.fullmatch(last) else None


def check_leak(site: CallSite, qual: str) -> None:
    """A secret passed to a logging call (DJ-PY-016) or a response constructor (DJ-PY-015)."""
    logger = _logged(site, qual)
    if logger is not None:
        values = [*site.args, *site.kwargs.values()]
        secret = next((v.secret for v in values if v.secret is not None), None)
        if secret is not None:
            site.hits.add(
                _hit("DJ-PY-016", site.node, f"a secret is logged by {logger}", secret, "logged")
            )
        return
    if qual in _RESPONSES:
        body = [*site.args, *(v for k, v in site.kwargs.items() if k not in _NOT_BODY)]
        secret = next((v.secret for v in body if v.secret is not None), None)
        if secret is not None:
            message = f"a secret is sent to the caller in the body of {qual}()"
            site.hits.add(_hit("DJ-PY-015", site.node, message, secret, "sent to the caller"))


def check_returned_secret(result: Value, stmt: ast.Return, function: str, hits: Hits) -> None:
    """An entry point (handler, route) returns a secret to its caller."""
    if result.secret is not None:
        what = "the environment (and any secret in it)" if result.secret[0].weak else "a secret"
        message = f"{function}() returns {what} to its caller"
        hits.add(_hit("DJ-PY-015", stmt, message, result.secret, "returned to the caller"))
