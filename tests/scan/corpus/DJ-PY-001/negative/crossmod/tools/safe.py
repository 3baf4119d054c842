# ruff: noqa

"""Shell helpers that never let their argument reach the shell unquoted."""
import shlex
import subprocess

FORMATS = {"png", "jpg", "webp"}


def convert(name):
    subprocess.run("convert " + shlex.quote(name) + " out.png", shell=True)


def pick_format(fmt):
    if fmt not in FORMATS:
        raise ValueError("unsupported format")
    subprocess.run("convert in.raw out." + fmt, shell=True)


def uptime():
    return subprocess.run("uptime", shell=True)


def quoted(name):
    return shlex.quote(name)
