"""A function granted egress that tries its way out: each op is one attempt, reported as data.

The standard proxy variables are the only door: `urllib` uses them unchanged; the raw
ops speak HTTP proxy to the same address by hand, to send what a library would not
(an IP literal, a mismatched SNI, a Host header naming another server, a forged token).
Nothing here raises on a refused attempt: the result says what the proxy answered.
"""

import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CA = os.path.join(HERE, "ca.pem")
KEPT = []  # connections kept open on purpose across calls (warm) or until exit


def _err(e):
    return f"{type(e).__name__}: {e}"


def _proxy():
    url = os.environ.get("HTTPS_PROXY") or os.environ.get("HTTP_PROXY")
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port


def _read_head(sock, limit=65536):
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return status, line, rest


def _read_body(sock, rest, limit):
    body = rest
    try:
        while len(body) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    except OSError as e:
        return body, _err(e)
    return body, None


def _open(event):
    """A connection to the proxy, or to the unix socket itself with a first line of our own."""
    if "unix" in event:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(15)
        sock.connect(event["unix"])
    else:
        proxy = _proxy()
        if proxy is None:
            raise OSError("no proxy in the environment")
        sock = socket.create_connection(proxy, timeout=15)
    if event.get("preamble"):
        sock.sendall(event["preamble"].encode("latin-1"))
    return sock


def _tunnel(event):
    """CONNECT target; then, if the proxy agrees, TLS with `sni` and GET `path`."""
    started = time.perf_counter()
    sock = _open(event)
    target = event["target"]
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {event.get('connect_host', target)}\r\n\r\n"
    sock.sendall(head.encode("latin-1"))
    status, line, _ = _read_head(sock)
    out = {"status": status, "line": line, "connect_s": time.perf_counter() - started}
    if status != 200 or "path" not in event:
        sock.close()
        return out
    context = ssl.create_default_context(cafile=CA)
    context.check_hostname = False  # the name checked is the SNI we chose, on purpose
    sni = event.get("sni")
    try:
        tls = context.wrap_socket(sock, server_hostname=sni)
        host = event.get("host", target.rsplit(":", 1)[0])
        tls.sendall(
            f"GET {event['path']} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        code, _, rest = _read_head(tls)
        out["http_status"] = code
        if event.get("keep"):
            KEPT.append(tls)
            return out
        body, error = _read_body(tls, rest, event.get("limit", 1 << 20))
        out["bytes"] = len(body)
        out["error"] = error
        out["elapsed_s"] = time.perf_counter() - started
        if code == 200 and body[:1] == b"{":
            out["reply"] = json.loads(body)
        tls.close()
    except (OSError, ValueError) as e:
        out["error"] = _err(e)
    return out


def _plain(event):
    """Absolute-form GET through the proxy, with a Host header of our choice; `then`: more
    requests [url, host] pipelined on the same connection (keep-alive) after the first."""
    sock = _open(event)
    url = event["url"]
    host = event.get("host", urllib.parse.urlsplit(url).netloc)
    then = event.get("then", [])
    head = ""
    for n, (u, h) in enumerate([(url, host), *then]):
        connection = "close" if n == len(then) else "keep-alive"
        head += f"GET {u} HTTP/1.1\r\nHost: {h}\r\nConnection: {connection}\r\n\r\n"
    sock.sendall(head.encode("latin-1"))
    status, line, rest = _read_head(sock)
    body, error = _read_body(sock, rest, 1 << 20)
    sock.close()
    out = {"status": status, "line": line, "error": error}
    if status == 200 and body[:1] == b"{":
        out["reply"] = json.loads(body)
    return out


def _urllib(event):
    context = ssl.create_default_context(cafile=CA)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(event["url"], context=context, timeout=15) as r:  # noqa: S310 - any URL: the attack
            reply = json.loads(r.read())
            elapsed = time.perf_counter() - started
            return {"status": r.status, "reply": reply, "elapsed_s": elapsed}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "error": _err(e)}
    except (OSError, ValueError) as e:
        return {"status": None, "error": _err(e)}


def _attempt(fn, event):
    try:
        return fn(event)
    except (OSError, ValueError) as e:
        return {"status": None, "error": _err(e)}


def _outwait(event):
    got = _attempt(_tunnel, {**event, "keep": True})
    if got.get("http_status") != 200:
        return got
    tls = KEPT.pop()
    tls.settimeout(1.0)
    closed = False
    for _ in range(event["give_up_s"]):
        try:
            if tls.recv(65536) == b"":
                closed = True
                break
        except TimeoutError:
            continue
        except OSError:
            closed = True
            break
    tls.close()
    return {**got, "closed": closed}


def handler(event, context):
    op = event["op"]
    if op == "env":
        names = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy")
        return {
            "proxy": {n: os.environ[n] for n in names if n in os.environ},
            "socket_dir": os.path.exists("/run/donjon-egress"),
        }
    if op == "urllib":
        return _urllib(event)
    if op == "connect":
        return _attempt(_tunnel, event)
    if op == "plain":
        return _attempt(_plain, event)
    if op == "repeat":  # the same attempt n times in one call
        results = [_attempt(_tunnel, event)["status"] for _ in range(event["n"])]
        return {"statuses": sorted(set(map(str, results))), "n": len(results)}
    if op == "many":  # n tunnels held open at once
        statuses = []
        for _ in range(event["n"]):
            got = _attempt(_tunnel, {**event, "keep": True})
            statuses.append([got["status"], got.get("http_status")])
        for s in KEPT:
            s.close()
        KEPT.clear()
        return {"statuses": statuses}
    if op == "outwait":  # hold a tunnel inside the call until someone closes it, or give up
        return _outwait(event)
    if op == "kept":  # what became of the connections an earlier call kept
        out = []
        for s in KEPT:
            try:
                s.settimeout(10)
                out.append(len(s.recv(65536)))
            except (OSError, ValueError) as e:
                out.append(_err(e))
        return {"kept": out}
    if op == "direct":  # no proxy: a plain socket to the origin
        try:
            socket.create_connection((event["host"], event["port"]), timeout=3).close()
            return {"connected": True}
        except OSError as e:
            return {"connected": False, "error": _err(e)}
    if op == "raw":
        out = {}
        for name, args in {
            "packet": (17, socket.SOCK_RAW, 0x0300),  # AF_PACKET, ETH_P_ALL
            "raw_ip": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP),
        }.items():
            try:
                socket.socket(*args).close()
                out[name] = "opened"
            except OSError as e:
                out[name] = _err(e)
        try:
            with open("/proc/net/dev") as f:
                out["net_dev"] = sorted(ln.split(":")[0].strip() for ln in f.readlines()[2:])
        except OSError as e:
            out["net_dev"] = _err(e)
        return out
    raise ValueError(f"unknown op {op}")
