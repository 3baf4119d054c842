"""A function whose attack runs at import time, before any handler call.

Module-level code runs wherever the platform imports the handler; it must be
held to the same controls as the handler itself. Here it tries to use any
privilege it was left with, and to switch off the controls each later call
would get (by replacing the runtime's helpers, which live in the same interpreter).
"""

import ctypes
import errno
import os
import sys

_libc = ctypes.CDLL(None, use_errno=True)


def _result(rc):
    return "ok" if rc == 0 else errno.errorcode.get(ctypes.get_errno(), "?")


def _status():
    with open("/proc/self/status") as f:
        return {
            k: v.strip()
            for k, _, v in (line.partition(":") for line in f)
            if k in ("CapEff", "CapPrm", "Seccomp")
        }


AT_IMPORT = {"status": _status()}
AT_IMPORT["unshare_mount_ns"] = _result(_libc.unshare(0x00020000))
os.makedirs("/tmp/sec-import-mnt", exist_ok=True)
AT_IMPORT["mount_tmpfs"] = _result(_libc.mount(b"tmpfs", b"/tmp/sec-import-mnt", b"tmpfs", 0, None))

PATCHED = []
for module_name, module in list(sys.modules.items()):
    if module_name.startswith("donjon_runtime"):
        for attr in ("drop_all_capabilities", "load_seccomp"):
            if callable(getattr(module, attr, None)):
                setattr(module, attr, lambda *args, **kwargs: None)
                PATCHED.append(f"{module_name}.{attr}")
AT_IMPORT["patched"] = PATCHED


def handler(event, context):
    return {"at_import": AT_IMPORT, "in_call": _status()}
