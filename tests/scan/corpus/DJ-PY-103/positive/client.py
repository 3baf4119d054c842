# ruff: noqa

import requests


def status(url):
    return requests.get(url).json()  # expect: DJ-PY-103
