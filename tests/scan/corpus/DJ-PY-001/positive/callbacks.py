# ruff: noqa

"""Shell sinks handed to functions that call them: threads, pools, executors, map."""
import asyncio
import multiprocessing
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor


def handler(event, context):
    command = event["command"]
    list(map(os.system, event["commands"]))  # expect: DJ-PY-001@high
    threading.Thread(target=os.system, args=(command,)).start()  # expect: DJ-PY-001@high
    threading.Thread(target=subprocess.run, args=(command,), kwargs={"shell": True}).start()  # expect: DJ-PY-001@high
    threading.Timer(5.0, os.system, (command,)).start()  # expect: DJ-PY-001@high
    multiprocessing.Process(target=os.system, args=(command,)).start()  # expect: DJ-PY-001@high
    with ThreadPoolExecutor() as pool:
        pool.submit(subprocess.run, command, shell=True)  # expect: DJ-PY-001@high
        pool.map(os.popen, event["commands"])  # expect: DJ-PY-001@high
    asyncio.to_thread(os.system, command)  # expect: DJ-PY-001@high
    return {"statusCode": 202}
