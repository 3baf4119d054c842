# ruff: noqa

import os


def publish(path):
    os.chmod(path, 0o777)  # expect: DJ-PY-105


def share(path):
    os.chmod(path, 0o775)  # expect: DJ-PY-105
