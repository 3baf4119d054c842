# ruff: noqa

import requests


def status(url):
    return requests.get(url, timeout=5).json()
