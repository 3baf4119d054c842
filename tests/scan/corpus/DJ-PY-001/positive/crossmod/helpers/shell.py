# ruff: noqa

"""Shell helpers: each sink is reached with the handler's event data."""
import os
import subprocess


def thumbnail(path):
    os.system("convert " + path + " thumb.png")  # expect: DJ-PY-001@high


def archive(name):
    return subprocess.run(f"tar czf {name}.tgz data/", shell=True)  # expect: DJ-PY-001@high


def build_command(name):
    return "identify " + name
