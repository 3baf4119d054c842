# ruff: noqa

"""Code from values Donjon cannot trace to a literal: a warning (medium severity), not an
error, since no event data is seen reaching it."""
import builtins
import code
import os


def run_rule(rule):
    return eval(rule["condition"])  # expect: DJ-PY-002@medium


def load_plugin(path):
    with open(path) as f:
        exec(f.read())  # expect: DJ-PY-002@medium


def from_environment():
    builtins.eval(os.environ["FORMULA"])  # expect: DJ-PY-002@medium


def compile_then_run(source):
    compiled = compile(source, "<rules>", "exec")  # expect: DJ-PY-002@medium
    exec(compiled)  # the code object is judged where it was compiled, above


def console_line(line):
    code.InteractiveConsole().push(line)  # expect: DJ-PY-002@medium
