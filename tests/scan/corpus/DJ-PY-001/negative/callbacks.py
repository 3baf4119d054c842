# ruff: noqa

"""Callbacks that run no shell with event data: argv lists, constants, other callables."""
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor


def handler(event, context):
    name = event["name"]
    threading.Thread(target=subprocess.run, args=(["convert", name, "out.png"],)).start()
    with ThreadPoolExecutor() as pool:
        pool.submit(subprocess.run, ["ls", "-l", name])
        pool.submit(print, name)
        pool.map(len, event["names"])
    list(map(os.system, ["uptime", "df -h"]))
    return {"statusCode": 202}
