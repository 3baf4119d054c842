# ruff: noqa

"""A module-level instance another module imports and calls."""
import subprocess


class Jobs:
    def launch(self, line):
        return subprocess.Popen(line, shell=True)  # expect: DJ-PY-001@high


jobs = Jobs()
