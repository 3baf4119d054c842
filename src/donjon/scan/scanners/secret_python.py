"""Secrets in Python call sites, read from the AST rather than from lines.

Two facts a line cannot give: which string is the *key* of ``jwt.encode(payload, "k")``,
``hmac.new(b"k", msg, sha256)`` or ``Fernet(b"...")`` (a literal signing or encryption key:
DJ-SEC-006, reported whatever the literal looks like, as Semgrep's
jwt-python-hardcoded-secret does, since any literal key lets anyone who reads the code forge
tokens), and which literal is passed to a credential parameter of a call
(``Client(api_key="...")``, ``boto3.client(aws_secret_access_key="...")``: DJ-SEC-003 with the
call as its context). It also tells which lines are documentation (docstrings and other bare
string statements), where a credential-looking value is an example.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from donjon.scan.project import SourceFile
from donjon.scan.python.imports import LOCAL, ImportMap
from donjon.scan.syntax import Syntax

__all__ = [
    "NAMED",
    "JoinedLiteral",
    "KeySite",
    "PythonFacts",
    "joined_literals",
    "may_have_call_sites",
    "python_facts",
]

#: Calls whose argument is a signing or encryption key: qualified name -> (position, keyword).
_KEY_ARGUMENT: dict[str, tuple[int, str]] = {
    "jwt.encode": (1, "key"),
    "jwt.decode": (1, "key"),
    "jwt.api_jwt.encode": (1, "key"),
    "jwt.api_jwt.decode": (1, "key"),
    "jose.jwt.encode": (1, "key"),
    "jose.jwt.decode": (1, "key"),
    "hmac.new": (0, "key"),
    "hmac.HMAC": (0, "key"),
    "hmac.digest": (0, "key"),
    "cryptography.fernet.Fernet": (0, "key"),
    "cryptography.hazmat.primitives.hmac.HMAC": (0, "key"),
    "Crypto.Cipher.AES.new": (0, "key"),
    "Cryptodome.Cipher.AES.new": (0, "key"),
    "itsdangerous.Serializer": (0, "secret_key"),
    "itsdangerous.URLSafeSerializer": (0, "secret_key"),
    "itsdangerous.TimedSerializer": (0, "secret_key"),
    "itsdangerous.URLSafeTimedSerializer": (0, "secret_key"),
    "itsdangerous.Signer": (0, "secret_key"),
    "itsdangerous.TimestampSigner": (0, "secret_key"),
}
#: Keyword parameters that take a credential (``aws_secret_access_key``, ``api_key``...).
_CREDENTIAL_PARAM = re.compile(
    r"(?i)(?:\w*_)?(?:password|passwd|pwd|secret|secret_?key|secret_access_key|api_?key|"
    r"apikey|auth_?key|access_?key|private_?key|client_?secret|(?:auth|access|api|bearer|bot|"
    r"refresh|session|id)_?token|token|credentials?)"
)
#: Framework settings that are signing keys (Flask and Django sessions, flask-jwt-extended).
_FRAMEWORK_KEYS = frozenset({"SECRET_KEY", "JWT_SECRET_KEY"})
_NOT_CREDENTIAL_PARAM = re.compile(r"(?i)next|continuation|page|idempotency|request_token|_id$")
#: A name that says "credential" without the ambiguous "token" (lexer, NLP and sentinel
#: tokens: ``PAD_TOKEN = "[PAD]"``, ``_DEFAULT_TOKEN = "_sa_default"``).
_PLAIN_CREDENTIAL = re.compile(r"(?i)passw|pwd|secret|key|cred")
#: Shorter than this, a literal assigned to a ``*token`` name is taken for a marker.
_MIN_TOKEN = 16
#: Regular-expression syntax: a pattern for a credential (a scanner's), not one.
_PATTERN = re.compile(r"\\[dswbDSWB]|\(\?|\[\^|\]\{\d|\]\+|\]\*")
#: Calls whose argument at this position is a password (user name first).
_PASSWORD_ARGUMENT: dict[str, int] = {
    "requests.auth.HTTPBasicAuth": 1,
    "requests.auth.HTTPDigestAuth": 1,
    "requests.HTTPBasicAuth": 1,
    "httpx.BasicAuth": 1,
    "httpx.DigestAuth": 1,
    "aiohttp.BasicAuth": 1,
}
#: Reads of the environment whose second argument is the value used when the variable is
#: not set: ``os.getenv("API_TOKEN", "<literal>")`` hard-codes the credential all the same.
_ENV_DEFAULTS = frozenset({"os.getenv", "os.environ.get", "os.environ.setdefault"})
#: A cheap look at the text first: most files have neither, and need no parse.
_WORTH_PARSING = re.compile(
    r"jwt|hmac|Fernet|Serializer|Signer|AES\b|SECRET_KEY|secret_key|getenv|environ|auth|login"
    r"|(?i:passw|pwd|secret|key|token|credential)\w*['\"\]]?\s*(?::[^=\n]{0,80})?="
    r"\s*[rbuRBU]{0,2}['\"]"
)


#: `KeySite.end_col` of a constant used by name: the line holds no part of the value.
NAMED = -1


@dataclass(frozen=True)
class KeySite:
    """A literal at a call site: a signing key (`signing`) or a credential argument."""

    line: int
    col: int
    end_col: int  # 0: the literal does not end on `line`; NAMED: a constant's name is there
    value: str
    call: str
    signing: bool
    #: Assigned to a name that says it is a credential (``password: str = "..."``), not
    #: passed to a call: graded as the line rule grades keyword values.
    assigned: bool = False


@dataclass(frozen=True)
class PythonFacts:
    """What the AST of one file says: documentation lines and literal keys at call sites."""

    doc_lines: frozenset[int]
    sites: tuple[KeySite, ...]


def _literal(node: ast.expr | None, constants: dict[str, str]) -> str | None:
    """The text of a str/bytes literal, of ``"...".encode()``, or of a module constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        value = node.value
        return value.decode("latin-1") if isinstance(value, bytes) else value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "encode"
    ):
        return _literal(node.func.value, constants)
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


class _Walk:
    """What the file's syntax index holds of imports, assignments, documentation and calls."""

    def __init__(self, syntax: Syntax) -> None:
        self.imports: list[ast.stmt] = list(syntax.imports)
        self.bindings: dict[str, int] = {}
        self.doc_lines: set[int] = set()
        self.calls = syntax.calls
        self.settings: list[KeySite] = []  # SECRET_KEY = "...", app.secret_key = "..."
        for node in syntax.assignments:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    self.bindings[target.id] = self.bindings.get(target.id, 0) + 1
                self._setting(target, node.value)
                if not isinstance(node, ast.AugAssign):
                    self._credential(target, node.value)
        for doc in syntax.strings:
            self.doc_lines.update(range(doc.lineno, (doc.end_lineno or doc.lineno) + 1))
        self.constants = self._module_constants(syntax.tree)

    def _setting(self, target: ast.expr, value_node: ast.expr | None) -> None:
        """``SECRET_KEY = "..."``, ``app.secret_key = "..."``, ``app.config["SECRET_KEY"] = ...``
        with a non-empty literal: a framework's signing key written in the code."""
        name = None
        if isinstance(target, ast.Name) and target.id in _FRAMEWORK_KEYS:
            name = target.id
        elif isinstance(target, ast.Attribute) and target.attr == "secret_key":
            name = "secret_key"
        elif (
            isinstance(target, ast.Subscript)
            and isinstance(target.slice, ast.Constant)
            and target.slice.value in _FRAMEWORK_KEYS
        ):
            name = str(target.slice.value)
        value = _literal(value_node, {})
        if name and value_node is not None and value:
            self.settings.append(_site(value_node, value, f"the {name} setting", signing=True))

    def _credential(self, target: ast.expr, value_node: ast.expr | None) -> None:
        """A literal assigned to a name that says it is a credential, annotated or not
        (``password: str = "..."``, ``self.api_token = "..."``, ``cfg["TOKEN"] = "..."``):
        the line rule reads ``password: str`` as a type annotation and stops there."""
        if isinstance(target, ast.Name):
            name = target.id
        elif isinstance(target, ast.Attribute):
            name = target.attr
        elif isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
            name = str(target.slice.value)
        else:
            return
        if not _credential_name(name) or name in _FRAMEWORK_KEYS:
            return
        value = _literal(value_node, {}) if not isinstance(value_node, ast.Name) else None
        if not value or _PATTERN.search(value):
            return
        if not _PLAIN_CREDENTIAL.search(name) and len(value) < _MIN_TOKEN:
            return
        if value_node is not None:
            self.settings.append(_site(value_node, value, name, signing=False, assigned=True))

    def _module_constants(self, tree: ast.Module) -> dict[str, str]:
        """Names bound once, at module level, to a string literal (``SECRET = "..."``)."""
        found: dict[str, str] = {}
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target = stmt.targets[0]
                if isinstance(target, ast.Name) and self.bindings.get(target.id) == 1:
                    value = _literal(stmt.value, {})
                    if value is not None:
                        found[target.id] = value
        return found


def _credential_name(name: str) -> bool:
    """Whether a parameter, variable or key name says its value is a credential."""
    return bool(_CREDENTIAL_PARAM.fullmatch(name)) and not _NOT_CREDENTIAL_PARAM.search(name)


def _site(
    node: ast.expr, value: str, call: str, *, signing: bool, assigned: bool = False
) -> KeySite:
    if isinstance(node, ast.Name):  # a module constant: the line shows its name, not the value
        return KeySite(node.lineno, node.col_offset + 1, NAMED, value, call, signing, assigned)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        node = node.func.value  # "...".encode(): the literal is the receiver
    literal = isinstance(node, ast.Constant) and node.end_lineno == node.lineno
    end = (node.end_col_offset or 0) if literal else 0
    return KeySite(node.lineno, node.col_offset + 1, end, value, call, signing, assigned)


def _call_sites(walk: _Walk) -> list[KeySite]:
    # Only the import statements: resolving a call needs nothing else, and a second walk of
    # the whole tree would double the cost.
    imports = ImportMap(ast.Module(body=walk.imports, type_ignores=[]))
    constants = walk.constants
    sites: list[KeySite] = []
    for node in walk.calls:
        qual = imports.qualname(node.func) or ""
        shown = qual.removeprefix(LOCAL)
        where = _KEY_ARGUMENT.get(qual)
        if where is not None:
            position, keyword = where
            arg = node.args[position] if len(node.args) > position else None
            arg = next((k.value for k in node.keywords if k.arg == keyword), arg)
            value = _literal(arg, constants)
            if arg is not None and value is not None:
                sites.append(_site(arg, value, f"{shown}()", signing=True))
                continue
        if qual in _ENV_DEFAULTS and len(node.args) > 1:
            variable, default = _literal(node.args[0], {}), node.args[1]
            value = _literal(default, {}) if not isinstance(default, ast.Name) else None
            if variable is not None and _credential_name(variable) and value is not None:
                sites.append(_site(default, value, f"{shown}({variable!r})", signing=False))
        password = _password_argument(node, qual)
        value = _literal(password, {}) if password is not None else None
        if password is not None and value is not None:
            sites.append(_site(password, value, f"{shown or 'login'}()", signing=False))
        for kw in node.keywords:
            if kw.arg in _FRAMEWORK_KEYS:
                value = _literal(kw.value, {})
                if value:
                    sites.append(_site(kw.value, value, f"the {kw.arg} setting", signing=True))
                continue
            if kw.arg is None or not _credential_name(kw.arg):
                continue
            value = _literal(kw.value, {})
            if value is not None:
                sites.append(_site(kw.value, value, f"{shown}()", signing=False))
    return sites + walk.settings


def _password_argument(node: ast.Call, qual: str) -> ast.expr | None:
    """The password a call is given as a user name and password pair, if any: of the basic
    and digest auth classes (`_PASSWORD_ARGUMENT`), a ``.login(user, password)`` method
    (smtplib, imaplib, ftplib, docker), and an ``auth=(user, password)`` tuple."""
    position = _PASSWORD_ARGUMENT.get(qual)
    if position is None and isinstance(node.func, ast.Attribute) and node.func.attr == "login":
        position = 1
    if position is not None and len(node.args) > position:
        return node.args[position]
    for kw in node.keywords:
        if kw.arg == "auth" and isinstance(kw.value, ast.Tuple) and len(kw.value.elts) == 2:
            return kw.value.elts[1]
    return None


def may_have_call_sites(text: str) -> bool:
    """Whether a module's text is worth an AST look for call sites (most have none)."""
    return bool(_WORTH_PARSING.search(text))


def python_facts(source: SourceFile) -> PythonFacts | None:
    """The facts of a Python file, or None if it does not parse (the line rules still run)."""
    syntax = source.syntax  # parsed once, shared with the code scanner
    if isinstance(syntax, str):
        return None
    walk = _Walk(syntax)
    sites = _call_sites(walk) if may_have_call_sites(source.text) else []
    return PythonFacts(frozenset(walk.doc_lines), tuple(sites))


@dataclass(frozen=True)
class JoinedLiteral:
    """A string the source writes in pieces, as a line the detectors can read."""

    line: int
    end_line: int
    #: The text before the string on its first line, then the whole value, quoted: what a
    #: line would hold had it been written whole (``TOKEN = "ghp_..."``).
    text: str


def joined_literals(source: SourceFile) -> list[JoinedLiteral]:
    """The strings of a Python file that no line holds whole: literals joined by `+` or by
    implicit concatenation (``("ghp_abc"\n "def")``, one string to Python), or written with
    escapes; each as the line it would be (`JoinedLiteral.text`)."""
    syntax = source.syntax
    if isinstance(syntax, str):
        return []
    out: list[JoinedLiteral] = []
    covered: set[int] = set()
    for node in syntax.joined:  # an outer `+` before the pieces it holds
        if id(node) in covered:
            continue
        value = _folded(node, covered)
        end = node.end_lineno or node.lineno
        if value is None or value in "\n".join(source.lines[node.lineno - 1 : end]):
            continue  # a line holds it whole: the line rules read it there
        head = source.line(node.lineno).encode()[: node.col_offset].decode(errors="replace")
        # `KEY = ("ab"`: the keyword rules read `KEY = "abcd"`.
        head = head.rstrip("( \t") + " " if head.strip() else ""
        out.append(JoinedLiteral(node.lineno, end, f'{head}"{value}"'))
    return out


def _folded(node: ast.expr, covered: set[int]) -> str | None:
    """The value of a `+` of string literals (or of one literal); None if any piece is not
    one. Without recursion: a chain of `+` is as deep as it is long."""
    parts: list[str] = []
    stack = [node]
    while stack:
        here = stack.pop()
        covered.add(id(here))
        if isinstance(here, ast.BinOp) and isinstance(here.op, ast.Add):
            stack += [here.right, here.left]
        elif isinstance(here, ast.Constant) and isinstance(here.value, str):
            parts.append(here.value)
        else:
            return None
    return "".join(parts)
