# ruff: noqa

"""eval and exec under other names, and handed to functions that call them."""
import builtins as runtime
import concurrent.futures
import threading
from code import InteractiveConsole


def handler(event, context):
    runtime.eval(event["a"])  # expect: DJ-PY-002@high
    __builtins__.exec(event["b"])  # expect: DJ-PY-002@high
    evaluate = getattr(__builtins__, "eval")
    evaluate(event["c"])  # expect: DJ-PY-002@high
    InteractiveConsole().push(event["d"])  # expect: DJ-PY-002@high
    results = list(map(eval, event["expressions"]))  # expect: DJ-PY-002@high
    ranked = sorted(event["rows"], key=eval)  # expect: DJ-PY-002@high
    with concurrent.futures.ThreadPoolExecutor() as pool:
        pool.submit(exec, event["job"])  # expect: DJ-PY-002@high
    threading.Thread(target=exec, args=(event["job"],)).start()  # expect: DJ-PY-002@high
    return {"results": results, "ranked": ranked}


def evaluate_all(lines):
    return list(map(eval, lines))  # expect: DJ-PY-002@medium
