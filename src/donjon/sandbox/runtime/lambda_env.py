"""What AWS Lambda's Python runtime gives a function beyond its context: its environment
variables and a root logger that writes to the call's output with the request id.

`logging` is not imported here unless the function's code imports it: it costs a cold
start milliseconds, and most Donjon handlers never log. The supervisor preloads it for
bundles that name it (preload.py), so installing the handler then costs nothing.
"""

from __future__ import annotations

import os
import sys
import time

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Account and region of Donjon's ARN-like names: a node is one account, in no AWS region.
ARN_ACCOUNT = "000000000000"
ARN_REGION = "local"
LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s"
#: Lambda's ApplicationLogLevel names, with Python's own, to logging's levels.
LEVELS = {
    "TRACE": 10,
    "DEBUG": 10,
    "INFO": 20,
    "WARN": 30,
    "WARNING": 30,
    "ERROR": 40,
    "FATAL": 50,
    "CRITICAL": 50,
}

# One log stream per sandbox, as Lambda has one per execution environment: named
# once, when the supervisor loads this module, for every worker it forks.
_STREAM = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{{version}}]{os.urandom(16).hex()}"
_state: dict[str, Any] = {"request_id": None, "installed": False, "level": None}


def function_arn(name: str) -> str:
    return f"arn:donjon:lambda:{ARN_REGION}:{ARN_ACCOUNT}:function:{name}"


def log_group(name: str) -> str:
    return f"/donjon/functions/{name}"


def log_stream(version: int | str) -> str:
    return _STREAM.format(version=version)


def prepare(config: dict[str, Any]) -> None:
    """In the supervisor, once, before it makes any worker (startup.py): Lambda's
    variables, and its root logger if the function's code will find `logging` already
    loaded (preloaded). Every worker is a copy of the supervisor, so each starts with
    both before its handler is imported, without setting them again."""
    name = str(config.get("function_name") or "")
    version = str(config.get("function_version") or "")
    level = config.get("log_level")
    os.environ.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.get("memory_mb", "")),
            "AWS_LAMBDA_LOG_GROUP_NAME": log_group(name),
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream(version),
            "LAMBDA_TASK_ROOT": "/fn",
            "_HANDLER": f"{config.get('module')}.{config.get('function')}",
        }
    )
    if level:
        os.environ["AWS_LAMBDA_LOG_LEVEL"] = str(level)
    _state["level"] = LEVELS.get(str(level or "").upper())
    install_logging()


def install_logging() -> None:
    """Give the root logger Lambda's handler, once, if `logging` is loaded at all."""
    if _state["installed"] or "logging" not in sys.modules:
        return
    import logging

    _state["installed"] = True
    handler = logging.StreamHandler(sys.stdout)  # print()'s stream: their order is kept
    formatter = logging.Formatter(LOG_FORMAT, "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_add_request_id)
    root = logging.getLogger()
    root.addHandler(handler)
    if _state["level"] is not None:
        root.setLevel(_state["level"])


def _add_request_id(record: Any) -> bool:
    record.aws_request_id = _state["request_id"]
    return True


def begin_call(request_id: str) -> None:
    """The request id log records carry until the call ends."""
    _state["request_id"] = request_id
    install_logging()  # a handler that imported `logging` only when first called


def end_call() -> None:
    _state["request_id"] = None
