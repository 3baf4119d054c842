# ruff: noqa

"""Callbacks that are not code runners, and code runners given only literals."""
import concurrent.futures


def handler(event, context):
    sizes = list(map(len, event["items"]))
    constants = list(map(eval, ["1 + 1", "2 ** 8"]))
    with concurrent.futures.ThreadPoolExecutor() as pool:
        pool.submit(print, event["message"])
    return {"sizes": sizes, "constants": constants}
