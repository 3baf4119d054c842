# ruff: noqa

"""The other half of the cycle."""
from helpers import ping


def pong(host, retries):
    return ping.ping(host, retries)
