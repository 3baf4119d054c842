"""API misuse rules: disabled TLS checks, weak hashes and ciphers, predictable temp files,
exception details handed to a web framework's error response.

These need no taint: the call itself (``verify=False``, ``DES.new``) is the finding.
Weak hashes are graded by purpose: high confidence where the code around says it
protects a password, token or signature, low otherwise (a checksum or cache key);
the name the result is given or the function it is in speaks first
(``cache_key = md5(token)`` is a cache key). Turning TLS verification off is graded
down (low confidence) where it cannot matter or hurt: against a plain-http endpoint
(there is no TLS to verify) and in test code (`graded_for_file`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from pathlib import PurePosixPath

from donjon.scan.model import Confidence
from donjon.scan.python.hits import CallSite, Hit, Hits
from donjon.scan.python.imports import ImportMap
from donjon.scan.python.leaks import check_leak
from donjon.scan.python.templates import check_template_assignment, check_templates

__all__ = ["check_assignment", "check_misuse", "graded_for_file", "in_test_code"]

_HIGH, _MEDIUM, _LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW

_UNVERIFIED_CONTEXTS = frozenset({"ssl._create_unverified_context", "ssl._create_stdlib_context"})
_WEAK_HASHES = frozenset({"md2", "md4", "md5", "sha", "sha1", "ripemd160"})
_HASH_CALLS = frozenset(
    {"hashlib.md5", "hashlib.sha1", "hashlib.md4"}
    | {
        f"{pkg}.Hash.{h}.new"
        for pkg in ("Crypto", "Cryptodome")
        for h in ("MD2", "MD4", "MD5", "SHA1", "SHA")
    }
    | {f"cryptography.hazmat.primitives.hashes.{h}" for h in ("MD5", "SHA1")}
)
_SECURITY_WORDS = re.compile(
    r"passw|pwd|secret|token|api_?key|auth|credential|signature|\bsign|salt|otp|session"
    r"|hmac|private|\bsig\b",
    re.IGNORECASE,
)
#: Purposes a weak hash is fine for: naming, caching, deduplicating, detecting change.
_CHECKSUM_WORDS = re.compile(
    r"cache|etag|checksum|fingerprint|dedup|content_?hash|file_?hash|md5sum|crc|shard"
    r"|partition|bucket|digest_?of|cache_?key|file_?name",
    re.IGNORECASE,
)
_PLAIN_HTTP = "http://"
_URL_ARGS = ("endpoint_url", "base_url", "url")
_CIPHER_CALLS = frozenset(
    {
        f"{pkg}.Cipher.{c}.new"
        for pkg in ("Crypto", "Cryptodome")
        for c in ("DES", "DES3", "ARC2", "ARC4", "Blowfish", "CAST", "XOR")
    }
    | {
        f"cryptography.hazmat.{where}.ciphers.algorithms.{c}"
        for where in ("primitives", "decrepit")
        for c in ("ARC4", "TripleDES", "Blowfish", "IDEA", "CAST5", "SEED")
    }
    | {"cryptography.hazmat.primitives.ciphers.modes.ECB"}
)
_BLOCK_CIPHERS = frozenset(
    f"{pkg}.Cipher.{c}.new"
    for pkg in ("Crypto", "Cryptodome")
    for c in ("AES", "DES3", "Blowfish", "CAST", "ARC2")
)
_MKTEMP = frozenset({"tempfile.mktemp", "os.tempnam", "os.tmpnam"})
_PATH_CALLS = frozenset(
    {
        "open",
        "io.open",
        "os.open",
        "codecs.open",
        "pathlib.Path",
        "pathlib.PurePath",
        "pathlib.PosixPath",
        "os.makedirs",
        "os.mkdir",
        "shutil.copy",
        "shutil.copyfile",
        "shutil.copy2",
        "shutil.move",
        "sqlite3.connect",
        "numpy.save",
        "logging.FileHandler",
        "tarfile.open",
        "zipfile.ZipFile",
        "os.mkfifo",
    }
)
_PATH_METHODS = frozenset({"write_text", "write_bytes", "touch", "mkdir"})
_SHARED_TMP = re.compile(r"^/(?:tmp|var/tmp|dev/shm)/[^/{%]")
_ERROR_RESPONSES = frozenset(
    {
        "fastapi.HTTPException",
        "starlette.exceptions.HTTPException",
        "flask.abort",
        "werkzeug.exceptions.abort",
        "quart.abort",
    }
)


def _plain_http(site: CallSite) -> bool:
    """The call's endpoint is a plain-http URL: no TLS, so nothing to verify."""
    values = [site.arg(0), *(site.kwargs.get(k) for k in _URL_ARGS)]
    return any(
        v is not None and v.prefix is not None and v.prefix.lower().startswith(_PLAIN_HTTP)
        for v in values
    )


def _tls(site: CallSite, qual: str) -> None:
    if qual in _UNVERIFIED_CONTEXTS:
        site.report("DJ-PY-006", _HIGH, f"{qual}() makes a context that checks no certificate")
    for name in ("verify", "ssl", "verify_ssl", "check_hostname"):
        node = site.keyword_node(name)
        if isinstance(node, ast.Constant) and node.value is False:
            if _plain_http(site):
                message = f"{name}=False on a plain-http endpoint (no TLS to verify)"
                site.report("DJ-PY-006", _LOW, message)
            else:
                site.report("DJ-PY-006", _HIGH, f"{name}=False turns off TLS verification")
    reqs = site.keyword_node("cert_reqs")
    if reqs is not None and _is_cert_none(reqs, site.imports):
        site.report("DJ-PY-006", _HIGH, "cert_reqs=CERT_NONE turns off TLS verification")


def _is_cert_none(node: ast.expr, imports: ImportMap) -> bool:
    if isinstance(node, ast.Constant):
        return node.value == "CERT_NONE"
    return (imports.qualname(node) or "").endswith("CERT_NONE")


def _hash(site: CallSite, qual: str) -> None:
    if qual == "hashlib.new":
        name = site.arg_node(0, "name")
        if not (isinstance(name, ast.Constant) and str(name.value).lower() in _WEAK_HASHES):
            return
    elif qual not in _HASH_CALLS:
        return
    if site.keyword_is("usedforsecurity", False):
        return
    algorithm = (
        qual.split(".")[-2]
        if qual.endswith(".new") and qual != "hashlib.new"
        else (qual.rsplit(".", maxsplit=1)[-1])
    )
    purpose = _purpose(site.context_text)
    if purpose == "secret":
        site.report(
            "DJ-PY-007", _HIGH, f"{algorithm} protects a secret here; it is broken for that use"
        )
    elif purpose == "checksum":
        site.report(
            "DJ-PY-007",
            _LOW,
            f"{algorithm} names or checks data here (a cache key, ETag, checksum): fine, "
            "say so with usedforsecurity=False",
        )
    else:
        site.report(
            "DJ-PY-007",
            _LOW,
            f"{algorithm} is broken for security use; if this is a "
            "checksum, say so with usedforsecurity=False",
        )


def _purpose(context: str) -> str | None:
    """What the words around a hash say it is for: "secret", "checksum" or None. The
    function's name and the assignment's target (``etag = ...``, ``def cache_key(...)``)
    name the purpose; the hashed expression (``md5(token)``) only when they do not."""
    function, _, statement = context.partition(" ")
    target, equals, expression = statement.partition("=")
    if not equals or "(" in target or expression.startswith("="):
        target, expression = "", statement
    named = f"{function} {target}"
    for words in (named, expression):
        if _CHECKSUM_WORDS.search(words):
            return "checksum"
        if _SECURITY_WORDS.search(words):
            return "secret"
    return None


def _cipher(site: CallSite, qual: str) -> None:
    if qual in _CIPHER_CALLS:
        name = (
            "ECB mode"
            if qual.endswith("ECB")
            else qual.split(".")[-2 if qual.endswith(".new") else -1]
        )
        site.report("DJ-PY-008", _HIGH, f"{name} is a broken cipher choice")
    elif qual in _BLOCK_CIPHERS:
        mode = site.arg_node(1, "mode")
        if mode is not None and (site.imports.qualname(mode) or "").endswith("MODE_ECB"):
            site.report("DJ-PY-008", _HIGH, "ECB mode leaks patterns of the plaintext")


def _temp(site: CallSite, qual: str) -> None:
    if qual in _MKTEMP:
        site.report("DJ-PY-009", _HIGH, f"{qual}() returns a name another process can claim first")
        return
    paths = []
    if qual in _PATH_CALLS:
        paths = [site.arg(0, "file") or site.arg(0, "path"), site.arg(1, "dst")]
    elif site.method in _PATH_METHODS:
        paths = [site.receiver]
    for value in paths:
        if value is not None and value.prefix and _SHARED_TMP.match(value.prefix):
            site.report(
                "DJ-PY-009", _MEDIUM, f"fixed path {value.prefix!r} in a shared temporary directory"
            )
            return


def _error_response(site: CallSite, qual: str) -> None:
    if qual not in _ERROR_RESPONSES:
        return
    for value in [*site.args, *site.kwargs.values()]:
        if value.exc is not None:
            confidence = _LOW if value.exc[0].weak else _HIGH
            site.report(
                "DJ-PY-010",
                confidence,
                f"{qual}() sends exception details to the client",
                value=value,
                sink_note=f"sent by {qual}()",
            )
            return


def check_misuse(site: CallSite, qual: str) -> None:
    """Run the misuse rules on one call."""
    if site.node.keywords or qual in _UNVERIFIED_CONTEXTS:
        _tls(site, qual)
    _hash(site, qual)
    _cipher(site, qual)
    _temp(site, qual)
    _error_response(site, qual)
    check_templates(site, qual)
    check_leak(site, qual)


def check_assignment(
    target: ast.expr,
    value: ast.expr,
    imports: ImportMap,
    hits: Hits,
    *,
    optional: str | None = None,
) -> None:
    """``ctx.verify_mode = ssl.CERT_NONE``, ``ctx.check_hostname = False``, ``s.verify = False``;
    low confidence when only done if the caller's option `optional` asks for it (a library
    honouring ``verify=False``: the caller passing it is what is reported)."""
    if not isinstance(target, ast.Attribute):
        return
    check_template_assignment(target, value, hits)
    off = (target.attr == "verify_mode" and _is_cert_none(value, imports)) or (
        target.attr in ("check_hostname", "verify")
        and isinstance(value, ast.Constant)
        and value.value is False
    )
    if off:
        hits.add(
            Hit(
                "DJ-PY-006",
                target.lineno,
                target.col_offset + 1,
                _HIGH if optional is None else _LOW,
                f"{target.attr} is set to turn off TLS verification"
                + ("" if optional is None else f" (when the caller's {optional} asks for it)"),
            )
        )


def in_test_code(rel: str) -> bool:
    """Whether a file is a test: under tests/ or test/, test_*.py, *_test.py, conftest.py."""
    path = PurePosixPath(rel)
    name = path.name
    return (
        any(part in ("tests", "test") for part in path.parts[:-1])
        or name == "conftest.py"
        or (name.startswith("test_") or name.endswith("_test.py"))
    )


#: Configuration rules whose findings in test code configure the tests, not what is deployed.
_TEST_SETTINGS = frozenset({"DJ-PY-006", "DJ-PY-014"})


def graded_for_file(hit: Hit, rel: str) -> Hit:
    """TLS verification or autoescaping turned off in test code is the tests' business (low
    confidence, still reported); event data reaching a sink there is graded as anywhere."""
    if (
        hit.rule_id in _TEST_SETTINGS
        and not hit.trace
        and hit.confidence > _LOW
        and in_test_code(rel)
    ):
        return replace(hit, confidence=_LOW, message=f"{hit.message} (in test code)")
    return hit
