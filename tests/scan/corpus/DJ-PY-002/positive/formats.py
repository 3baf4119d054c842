# ruff: noqa

"""Code built from event data: format strings, compile() then exec, other interpreters."""
import ast
import code
import codeop
import cProfile
import pdb
import timeit
from builtins import exec as run_code

TEMPLATE = "result = {}"


def handler(event, context):
    exec("total = {}".format(event["amount"]))  # expect: DJ-PY-002@high
    exec("total = %s" % event["amount"])  # expect: DJ-PY-002@high
    exec(f"total = {event['amount']}")  # expect: DJ-PY-002@high
    exec(TEMPLATE.format(event["expr"]))  # expect: DJ-PY-002@high
    run_code(event["script"])  # expect: DJ-PY-002@high
    compiled = compile(event["src"], "<event>", "exec")  # expect: DJ-PY-002@high
    exec(compiled)  # expect: DJ-PY-002@high
    tree = ast.parse(event["module"])
    exec(compile(tree, "<event>", "exec"))  # expect: DJ-PY-002@high
    code.InteractiveInterpreter().runsource(event["line"])  # expect: DJ-PY-002@high
    console = code.InteractiveConsole()
    console.push(event["line"])  # expect: DJ-PY-002@high
    code.compile_command(event["line"])  # expect: DJ-PY-002@high
    codeop.compile_command(event["line"])  # expect: DJ-PY-002@high
    timeit.timeit(event["stmt"], number=1)  # expect: DJ-PY-002@high
    cProfile.run(event["stmt"])  # expect: DJ-PY-002@high
    pdb.runeval(event["expr"])  # expect: DJ-PY-002@high
    return {"statusCode": 200}
