# ruff: noqa

import os


def publish(path):
    os.chmod(path, 0o600)


def make_program(path, directory):
    os.chmod(path, 0o755)
    os.chmod(directory, 0o555)
