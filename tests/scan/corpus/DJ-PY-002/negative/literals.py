# ruff: noqa

"""Literal code, also folded from literals: not code injection, nothing to report."""
import code
import timeit

SETUP = "import math"
EXPRESSION = "math.sqrt(2)"
PROGRAM = SETUP + "; " + EXPRESSION
SNIPPETS = {"sqrt": "math.sqrt(2)", "pi": "math.pi"}


class Calculator:
    FORMULA = "2 ** 10"

    def run(self):
        return eval(self.FORMULA)


def handler(event, context):
    exec(SETUP)
    eval("1 " + "+ 2")
    exec(PROGRAM)
    exec(f"{SETUP}\nvalue = {EXPRESSION}")
    eval(SNIPPETS[event["which"]])
    compiled = compile("x = 1", "<const>", "exec")
    exec(compiled)
    code.InteractiveInterpreter().runsource("print('ready')")
    timeit.timeit(lambda: sum(event["numbers"]), number=1)
    timeit.timeit(EXPRESSION, setup=SETUP, number=1)
    return {"value": Calculator().run()}
