"""The rule catalog: every rule's stable id, grading, weakness, risk and fix.

Ids never change meaning: DJ-PY-0xx are Donjon's own Python rules (with taint),
DJ-PY-1xx are Bandit checks Donjon runs as a library, DJ-SEC secrets, DJ-DEP
dependencies and DJ-MF manifest rules; DJ-IAC rules over templates are in
`donjon.scan.iac.catalog` and join `RULES` here. Each rule has a positive and a
negative example in ``tests/scan/corpus/<id>/``.
"""

from __future__ import annotations

from collections.abc import Mapping

from donjon.scan.iac.catalog import IAC_RULES
from donjon.scan.model import Cwe, FindingKind, SasCategory, Severity
from donjon.scan.rule import Rule

__all__ = ["RULES", "Rule", "rule"]

_C, _S, _D, _M = FindingKind.CODE, FindingKind.SECRET, FindingKind.DEPENDENCY, FindingKind.MANIFEST
_SAS = SasCategory


_CATALOG = (
    # Donjon's own Python rules (taint-aware).
    Rule(
        "DJ-PY-001",
        "command-injection",
        _C,
        Severity.HIGH,
        Cwe.OS_COMMAND_INJECTION,
        _SAS.SAS_1,
        "A shell command built from data the function does not control.",
        "Pass an argv list to subprocess.run without shell=True, and validate values "
        "against an allowlist (or shlex.quote them).",
    ),
    Rule(
        "DJ-PY-002",
        "code-injection",
        _C,
        Severity.HIGH,
        Cwe.EVAL_INJECTION,
        _SAS.SAS_1,
        "eval, exec, compile or another runner of text as code (code, codeop, timeit, "
        "the profilers and debuggers) given a value that is not a literal: an error when "
        "event data reaches it, a warning otherwise.",
        "Never evaluate input as code: parse it (json.loads, ast.literal_eval) or dispatch "
        "through a dict of allowed operations.",
    ),
    Rule(
        "DJ-PY-003",
        "sql-injection",
        _C,
        Severity.HIGH,
        Cwe.SQL_INJECTION,
        _SAS.SAS_1,
        "An SQL statement built by concatenation or formatting reaches a database API "
        "(execute, query, raw, SQLAlchemy text, pandas.read_sql, the AWS data APIs).",
        "Use placeholders and pass values separately: cursor.execute('... WHERE id = ?', (id,)).",
    ),
    Rule(
        "DJ-PY-004",
        "unsafe-deserialization",
        _C,
        Severity.MEDIUM,
        Cwe.UNSAFE_DESERIALIZATION,
        _SAS.SAS_1,
        "pickle, marshal, shelve, jsonpickle or yaml.load without a safe loader can run code "
        "hidden in the data they read.",
        "Use a data-only format: json, or yaml.safe_load; never unpickle data from outside.",
    ),
    Rule(
        "DJ-PY-005",
        "xml-external-entities",
        _C,
        Severity.MEDIUM,
        Cwe.XXE,
        _SAS.SAS_1,
        "An XML parser that resolves entities (xml.etree, minidom, pulldom, sax, lxml).",
        "Parse with defusedxml (defusedxml.ElementTree.fromstring, ...) or an lxml parser "
        "with resolve_entities=False.",
    ),
    Rule(
        "DJ-PY-006",
        "tls-verification-disabled",
        _C,
        Severity.HIGH,
        Cwe.IMPROPER_CERT_VALIDATION,
        _SAS.SAS_3,
        "TLS certificate or host name verification is turned off.",
        "Keep verification on; to trust a private CA pass its bundle: verify='/path/ca.pem'.",
    ),
    Rule(
        "DJ-PY-007",
        "weak-hash",
        _C,
        Severity.HIGH,
        Cwe.WEAK_HASH,
        _SAS.SAS_3,
        "MD4, MD5 or SHA-1 used where the value protects a password, token or signature.",
        "Use hashlib.sha256 for integrity, hmac.compare_digest for comparison and "
        "hashlib.scrypt or argon2 for passwords; pass usedforsecurity=False for checksums.",
    ),
    Rule(
        "DJ-PY-008",
        "weak-cipher",
        _C,
        Severity.HIGH,
        Cwe.BROKEN_CRYPTO,
        _SAS.SAS_3,
        "A broken cipher (DES, 3DES, RC2, RC4, Blowfish, IDEA, CAST5) or ECB mode.",
        "Use an authenticated cipher: AES-GCM or ChaCha20-Poly1305 (cryptography's AEAD APIs).",
    ),
    Rule(
        "DJ-PY-009",
        "insecure-temp-file",
        _C,
        Severity.MEDIUM,
        Cwe.INSECURE_TEMP_FILE,
        _SAS.SAS_3,
        "tempfile.mktemp or a fixed name in a shared temporary directory: another process "
        "(or the next warm invocation) can predict, pre-create or read it.",
        "Use tempfile.NamedTemporaryFile, mkstemp or TemporaryDirectory.",
    ),
    Rule(
        "DJ-PY-010",
        "exception-details-returned",
        _C,
        Severity.MEDIUM,
        Cwe.ERROR_MESSAGE_EXPOSURE,
        _SAS.SAS_10,
        "An exception message or traceback is returned to the caller.",
        "Log the exception (context.log / logging.exception) and return a generic error "
        "with a request id.",
    ),
    Rule(
        "DJ-PY-011",
        "server-side-request-forgery",
        _C,
        Severity.HIGH,
        Cwe.SSRF,
        _SAS.SAS_1,
        "Event data chooses the host of an outbound request (requests, httpx, urllib, "
        "urllib3, aiohttp, http.client, a client's base_url, a boto3 endpoint_url).",
        "Keep the scheme and host constant and put the caller's data in the path or the "
        "query (params=), or check the host against an allowlist before the request.",
    ),
    Rule(
        "DJ-PY-012",
        "path-traversal",
        _C,
        Severity.HIGH,
        Cwe.PATH_TRAVERSAL,
        _SAS.SAS_1,
        "Event data chooses a local file that is opened, written, deleted or sent "
        "(open, os and shutil file operations, pathlib, send_file, FileResponse, S3 transfers).",
        "Use os.path.basename or werkzeug's secure_filename on the name, or resolve the "
        "path and check it stays under the base directory (Path.resolve().is_relative_to).",
    ),
    Rule(
        "DJ-PY-013",
        "template-injection",
        _C,
        Severity.HIGH,
        Cwe.TEMPLATE_INJECTION,
        _SAS.SAS_1,
        "Event data is compiled as a template (Jinja2, Mako, Django, Tornado, Chameleon): "
        "template syntax in it runs in the engine, often up to arbitrary code.",
        "Keep templates constant (files or literals) and pass event data as variables: "
        "render_template('page.html', name=name), template.render(name=name).",
    ),
    Rule(
        "DJ-PY-014",
        "autoescape-disabled",
        _C,
        Severity.HIGH,
        Cwe.CROSS_SITE_SCRIPTING,
        _SAS.SAS_1,
        "HTML autoescaping is turned off through a framework's template wrapper (aiohttp_jinja2, "
        "Flask, Starlette/FastAPI, select_autoescape, jinja2.Template of HTML), or data from "
        "outside is marked safe with Markup (XSS).",
        "Leave autoescaping on (the wrappers' default); escape with markupsafe.escape or "
        "Markup('<b>{}</b>').format(value) instead of Markup(value).",
    ),
    Rule(
        "DJ-PY-015",
        "secret-returned",
        _C,
        Severity.HIGH,
        Cwe.SENSITIVE_INFORMATION_EXPOSURE,
        _SAS.SAS_7,
        "A secret from the environment, the vault or a secrets service is returned to the "
        "caller or put in a response body.",
        "Never return a secret; return what was done with it, or a masked form "
        "(value[:4] + '...').",
    ),
    Rule(
        "DJ-PY-016",
        "secret-logged",
        _C,
        Severity.MEDIUM,
        Cwe.SENSITIVE_INFORMATION_IN_LOG,
        _SAS.SAS_5,
        "A secret from the environment, the vault or a secrets service is printed or logged.",
        "Log that the secret was used, not its value; mask it (value[:4] + '...') if it must "
        "be told apart.",
    ),
    Rule(
        "DJ-PY-017",
        "dynamic-import-or-attribute",
        _C,
        Severity.HIGH,
        Cwe.UNSAFE_REFLECTION,
        _SAS.SAS_1,
        "A name looked up on a dangerous module or namespace (os, subprocess, builtins, "
        "globals(), sys.modules...) by getattr, __import__, import_module or a subscript "
        "cannot be resolved: whatever it reaches escapes every other rule.",
        "Import modules and call functions by their names (subprocess.run([...]), not "
        "getattr(os, name) or import_module(name)); to dispatch on input, map allowed names "
        "to functions or modules in a dict.",
    ),
    # Bandit checks, run through Bandit's library and mapped to stable ids.
    Rule(
        "DJ-PY-101",
        "flask-debug",
        _C,
        Severity.HIGH,
        Cwe.CODE_INJECTION,
        _SAS.SAS_3,
        "A Flask app run with debug=True exposes the Werkzeug debugger (remote code execution).",
        "Remove debug=True; configure debugging only in local development.",
    ),
    Rule(
        "DJ-PY-102",
        "bind-all-interfaces",
        _C,
        Severity.MEDIUM,
        Cwe.BIND_ALL_INTERFACES,
        _SAS.SAS_3,
        "A socket or server bound to 0.0.0.0 listens on every network interface.",
        "Bind to 127.0.0.1 or to the one interface that must serve.",
    ),
    Rule(
        "DJ-PY-103",
        "request-without-timeout",
        _C,
        Severity.MEDIUM,
        Cwe.RESOURCE_EXHAUSTION,
        _SAS.SAS_8,
        "An outbound HTTP call without a timeout can hang until the function's deadline, "
        "billing the whole time.",
        "Pass timeout= to every requests/httpx call.",
    ),
    Rule(
        "DJ-PY-104",
        "jinja2-autoescape-off",
        _C,
        Severity.HIGH,
        Cwe.CROSS_SITE_SCRIPTING,
        _SAS.SAS_1,
        "A Jinja2 environment without autoescaping renders input as HTML (XSS).",
        "Use Environment(autoescape=select_autoescape()) or autoescape=True.",
    ),
    Rule(
        "DJ-PY-105",
        "permissive-file-permissions",
        _C,
        Severity.MEDIUM,
        Cwe.PERMISSIVE_FILE_PERMISSIONS,
        _SAS.SAS_3,
        "chmod grants write or execute to group or others.",
        "Use the narrowest mode, such as 0o600 for files and 0o700 for directories.",
    ),
    Rule(
        "DJ-PY-106",
        "cleartext-protocol",
        _C,
        Severity.HIGH,
        Cwe.CLEARTEXT_TRANSMISSION,
        _SAS.SAS_3,
        "FTP or Telnet send credentials and data in clear text.",
        "Use SFTP/FTPS (ftplib.FTP_TLS) or SSH instead.",
    ),
    Rule(
        "DJ-PY-107",
        "ssh-host-key-not-verified",
        _C,
        Severity.HIGH,
        Cwe.IMPROPER_CERT_VALIDATION,
        _SAS.SAS_3,
        "paramiko trusts unknown host keys (AutoAddPolicy/WarningPolicy): no protection "
        "against a man in the middle.",
        "Load known host keys and use RejectPolicy.",
    ),
    Rule(
        "DJ-PY-108",
        "weak-key-size",
        _C,
        Severity.HIGH,
        Cwe.INADEQUATE_KEY_SIZE,
        _SAS.SAS_3,
        "An RSA or DSA key under 2048 bits, or an EC key under 224 bits.",
        "Generate RSA keys of at least 3072 bits, or use Ed25519 / P-256.",
    ),
    # Secrets.
    Rule(
        "DJ-SEC-001",
        "hard-coded-token",
        _S,
        Severity.HIGH,
        Cwe.HARD_CODED_CREDENTIALS,
        _SAS.SAS_7,
        "A credential in a known token format (cloud, SaaS or CI key) is written in a file.",
        "Revoke the token, then store it with `donjon secret set` and read it from "
        "context.secrets.",
    ),
    Rule(
        "DJ-SEC-002",
        "private-key",
        _S,
        Severity.HIGH,
        Cwe.HARD_CODED_KEY,
        _SAS.SAS_7,
        "A private key is written in a file.",
        "Rotate the key pair and keep the private key in the vault (`donjon secret set`).",
    ),
    Rule(
        "DJ-SEC-003",
        "hard-coded-password",
        _S,
        Severity.HIGH,
        Cwe.HARD_CODED_PASSWORD,
        _SAS.SAS_7,
        "A password or secret is assigned a literal value.",
        "Read it from context.secrets after `donjon secret set`; never commit the value.",
    ),
    Rule(
        "DJ-SEC-004",
        "high-entropy-string",
        _S,
        Severity.MEDIUM,
        Cwe.HARD_CODED_CREDENTIALS,
        _SAS.SAS_7,
        "A random-looking string that may be a credential.",
        "If it is a credential, move it to the vault; if not, accept it in the baseline.",
    ),
    Rule(
        "DJ-SEC-005",
        "credentials-in-url",
        _S,
        Severity.HIGH,
        Cwe.HARD_CODED_CREDENTIALS,
        _SAS.SAS_7,
        "A URL carries a user name and password.",
        "Keep the password in the vault and build the URL at run time.",
    ),
    Rule(
        "DJ-SEC-006",
        "hard-coded-signing-key",
        _S,
        Severity.HIGH,
        Cwe.HARD_CODED_KEY,
        _SAS.SAS_7,
        "A literal is the key of a signing or encryption call (jwt.encode/decode, hmac.new, "
        "Fernet, itsdangerous) or a framework's signing-key setting (SECRET_KEY, "
        "app.secret_key): whoever reads the code can forge tokens, sessions or signatures, "
        "whatever the literal looks like.",
        "Rotate the key, store it with `donjon secret set` and pass context.secrets[...] "
        "to the call or setting.",
    ),
    # Dependencies.
    Rule(
        "DJ-DEP-001",
        "vulnerable-dependency",
        _D,
        Severity.HIGH,
        Cwe.VULNERABLE_DEPENDENCY,
        _SAS.SAS_6,
        "A dependency version is affected by a published advisory.",
        "Upgrade to a fixed version.",
    ),
    # Manifest.
    Rule(
        "DJ-MF-001",
        "public-trigger-without-rate-limit",
        _M,
        Severity.HIGH,
        Cwe.ALLOCATION_WITHOUT_LIMITS,
        _SAS.SAS_8,
        "An http trigger with auth: public and no limits.rate: anyone can call it as fast as "
        "they like, at your cost.",
        'Add limits: {rate: "60/minute"} (or require auth: key | jwt).',
    ),
    Rule(
        "DJ-MF-002",
        "broad-permission-grant",
        _M,
        Severity.HIGH,
        Cwe.UNNECESSARY_PRIVILEGES,
        _SAS.SAS_4,
        "A permission with a wildcard (an egress '*.' over a whole top-level domain), or an "
        "egress grant the egress proxy refuses: cloud metadata, a loopback, private, "
        "link-local or other non-global address outside DONJON_EGRESS_ALLOW_NETWORKS, an "
        "IP address in a non-canonical notation, a malformed host:port.",
        "Grant exact names and host:port pairs ('*.example.com:443' for subdomains), and "
        "only what the function uses.",
    ),
    Rule(
        "DJ-MF-003",
        "unused-secret-grant",
        _M,
        Severity.MEDIUM,
        Cwe.LEAST_PRIVILEGE_VIOLATION,
        _SAS.SAS_4,
        "A secret is granted but the code never reads it.",
        "Remove the grant from permissions.secrets.",
    ),
    Rule(
        "DJ-MF-004",
        "missing-resource-bounds",
        _M,
        Severity.MEDIUM,
        Cwe.ALLOCATION_WITHOUT_LIMITS,
        _SAS.SAS_8,
        "timeout_s or memory_mb is missing, not positive, or beyond the platform's limits.",
        "Set memory_mb and timeout_s to what the function needs (e.g. 128 and 10).",
    ),
    Rule(
        "DJ-MF-005",
        "unauthenticated-event-trigger",
        _M,
        Severity.HIGH,
        Cwe.MISSING_AUTHENTICATION,
        _SAS.SAS_2,
        "A webhook trigger (or an s3 trigger with source: push) without a secret: anyone "
        "who finds its /hooks path can run the function with any event.",
        "Name a vault secret: webhook: {path: /github, scheme: github, secret: gh-hook}.",
    ),
)

RULES: Mapping[str, Rule] = {r.id: r for r in (*_CATALOG, *IAC_RULES)}


def rule(rule_id: str) -> Rule:
    """The catalog entry for `rule_id` (a programming error if unknown)."""
    return RULES[rule_id]
