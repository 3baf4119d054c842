# ruff: noqa

"""Runs a job: relative imports one and two levels up."""
import subprocess

from ..shell import thumbnail
from . import steps


def run_job(job):
    thumbnail(job["preview"])
    subprocess.call(steps.command_for(job), shell=True)  # expect: DJ-PY-001@high
