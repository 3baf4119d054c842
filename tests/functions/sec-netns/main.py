"""Calls that try to reach each other over the sandbox's loopback (issue 12, point 3).

At import every worker opens a TCP listener on an ephemeral loopback port:
a call that finds another worker's listener (the spare that will serve the
next call) can leave bytes in it for that later call to read.
"""

import contextlib
import os
import socket
import time

IMPORT_LISTENER = socket.create_server(("127.0.0.1", 0))
IMPORT_LISTENER.setblocking(False)
MY_PORT = IMPORT_LISTENER.getsockname()[1]


def _err(e):
    return type(e).__name__ + ":" + str(getattr(e, "errno", ""))


def _loopback_listeners():
    """Ports in LISTEN on 127.0.0.1 that this worker's namespace shows (/proc/net/tcp)."""
    ports = set()
    with open("/proc/self/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.split(":")
            if state == "0A" and address == "0100007F":
                ports.add(int(port, 16))
    return ports


def op_listen(event):
    """Listen on TCP and UDP 127.0.0.1:port; say what arrives within `seconds`."""
    port = event["port"]
    tcp = socket.create_server(("127.0.0.1", port))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    tcp.settimeout(0.05)
    udp.settimeout(0.05)
    got = {"tcp": None, "udp": None}
    deadline = time.monotonic() + event["seconds"]
    while time.monotonic() < deadline and (got["tcp"] is None or got["udp"] is None):
        with contextlib.suppress(OSError):
            conn, _ = tcp.accept()
            conn.settimeout(2)
            got["tcp"] = conn.recv(100).decode()
            conn.close()
        with contextlib.suppress(OSError):
            got["udp"] = udp.recv(100).decode()
    return got


def op_connect(event):
    """For `seconds`: send datagrams to 127.0.0.1:port and try TCP until it connects
    (the listener may start late)."""
    port, marker = event["port"], event["marker"].encode()
    out = {"tcp": "never tried", "udp_sent": 0}
    deadline = time.monotonic() + event["seconds"]
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.sendto(marker, ("127.0.0.1", port))
                out["udp_sent"] += 1
            except OSError as e:
                out["udp"] = _err(e)
        if out["tcp"] != "connected":
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    c.sendall(marker)
                out["tcp"] = "connected"
            except OSError as e:
                out["tcp"] = _err(e)
        time.sleep(0.1)
    return out


def op_plant(event):
    """Leave `marker` in every other worker's import listener this namespace shows."""
    deadline = time.monotonic() + event["seconds"]
    planted = []
    while time.monotonic() < deadline and not planted:
        for port in _loopback_listeners() - {MY_PORT}:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    c.sendall(event["marker"].encode())
                planted.append(port)
            except OSError:
                continue
        time.sleep(0.05)
    return {"planted": planted}


def op_drain(event):
    """What earlier calls left in this worker's import listener."""
    found = []
    for _ in range(64):
        try:
            conn, _ = IMPORT_LISTENER.accept()
        except OSError:
            break
        conn.settimeout(1)
        with contextlib.suppress(OSError):
            found.append(conn.recv(100).decode())
        conn.close()
    return {"found": found}


def op_env(event):
    """What the function sees of the network and of the egress proxy."""
    names = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy")
    out = {"proxy_env": {n: os.environ[n] for n in names if n in os.environ}}
    out["egress_dir"] = os.path.exists("/run/donjon-egress")
    out["proxy_sock"] = os.path.exists("/run/donjon-egress/proxy.sock")
    with open("/proc/self/net/dev") as f:
        out["interfaces"] = [line.split(":")[0].strip() for line in f if ":" in line]
    out["listeners"] = sorted(_loopback_listeners() - {MY_PORT})
    try:
        with socket.create_connection(("127.0.0.1", 3128), timeout=2):
            out["relay"] = "connected"
    except OSError as e:
        out["relay"] = _err(e)
    return out


def op_raw(event):
    """Raw and packet sockets, and a datagram to an outside address."""
    out = {}
    for label, args in {
        "packet": (socket.AF_PACKET, socket.SOCK_RAW, 0x0300),
        "raw_ip": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        "raw_tcp": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP),
    }.items():
        try:
            socket.socket(*args).close()
            out[label] = "opened"
        except OSError as e:
            out[label] = _err(e)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(b"x", (event["host"], event["port"]))
            out["udp_out"] = "sent"
        except OSError as e:
            out["udp_out"] = _err(e)
    return out


def handler(event, context):
    return globals()["op_" + event["op"]](event)
