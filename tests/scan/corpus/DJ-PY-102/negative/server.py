# ruff: noqa

import socket


def serve():
    s = socket.socket()
    s.bind(("127.0.0.1", 8080))
    return s
