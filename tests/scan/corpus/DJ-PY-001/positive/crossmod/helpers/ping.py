# ruff: noqa

"""A cycle across modules: ping() -> pong() -> ping(); the analysis must end."""
import os

from . import pong


def ping(host, retries):
    if retries > 0:
        return pong.pong(host, retries - 1)
    return os.system("ping -c 1 " + host)  # expect: DJ-PY-001@high
