# ruff: noqa

import socket


def serve():
    s = socket.socket()
    s.bind(("0.0.0.0", 8080))  # expect: DJ-PY-102
    return s
