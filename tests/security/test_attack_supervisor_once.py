"""Attacks on what the sandbox supervisor does once for every worker (invcpu, issue 14
target 2): its bounding set emptied; Lambda's environment, the root logger's handler,
stdout's line buffering and the bundle's path finders set up in it, and every worker
(one-call and warm, cloned, or forked through an intermediate for egress) inheriting
them instead of redoing them.

Each kind of worker is attacked on a node of its own that grants egress to 127.0.0.2
(nothing listens there: a grant is all a worker needs to be made the egress way).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cgroupfs import children, descendants
from donjon.bundle import build_bundle
from donjon.bundle.archive import pack
from harness import LiveNode, start_node
from sec_support import attack, bundle_dir

_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21
#: All the supervisor may hold (effective and permitted): what bubblewrap gives it,
#: less CAP_SETPCAP, which it gives up once its bounding set is empty.
_SUPERVISOR_MAY_HOLD = 1 << _CAP_SYS_ADMIN | 1 << _CAP_NET_ADMIN
_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
_EGRESS = 'permissions: {egress: ["127.0.0.2:9"]}\n'

CAPS = r"""
import ctypes, os, subprocess, sys, time

SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
_libc = ctypes.CDLL(None, use_errno=True)


def _status(text=None):
    text = text if text is not None else open("/proc/self/status").read()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: fields[k].strip() for k in (*SETS, "NoNewPrivs") if k in fields}


AT_IMPORT = _status()


def _errno(result):
    return "ok" if result == 0 else os.strerror(ctypes.get_errno())


def _regain():
    out = {}
    # capset(2): CAP_SYS_ADMIN back into the effective and permitted sets.
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)(1 << 21, 1 << 21, 1 << 21, 0, 0, 0)
    out["capset"] = _errno(_libc.capset(header, data))
    # PR_CAP_AMBIENT_RAISE of CAP_SYS_ADMIN.
    out["ambient_raise"] = _errno(_libc.prctl(47, 2, 21, 0, 0))
    # PR_CAPBSET_READ of every capability: the bounding set as this process sees it.
    out["bounding_held"] = [c for c in range(64) if _libc.prctl(23, c, 0, 0, 0) == 1]
    # A user namespace of its own would hold every capability in it.
    out["unshare_user"] = _errno(_libc.unshare(0x10000000))
    out["status_after"] = _status()
    # What a program it executes holds.
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", "print(open('/proc/self/status').read())"],
        capture_output=True, text=True, timeout=20,
    )
    out["exec_status"] = _status(done.stdout) if done.returncode == 0 else done.stderr[-500:]
    # Set-user-id, set-group-id and file-capability programs in the sandbox: none may
    # raise anything (nosuid mounts, no_new_privs, an empty bounding set); listed only.
    special = []
    for top in ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/lib", "/usr/libexec"):
        for root, _dirs, files in os.walk(top):
            for name in files:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                    caps = os.getxattr(path, "security.capability", follow_symlinks=False)
                except OSError:
                    caps = None
                    try:
                        st = os.lstat(path)
                    except OSError:
                        continue
                if st.st_mode & 0o6000 or caps:
                    nosuid = bool(os.statvfs(path).f_flag & os.ST_NOSUID)
                    special.append([path, oct(st.st_mode), bool(caps), nosuid])
    out["special"] = special
    return out


def handler(event, context):
    op = event.get("op")
    if op == "hold":
        time.sleep(event["s"])
        return {"call": _status()}
    if op == "regain":
        return _regain()
    return {"import": AT_IMPORT, "call": _status()}
"""

#: (function, its manifest's lines beyond the common ones): every kind of worker.
KINDS = {
    "so-inv": "policies: {child_processes: allow}\n",
    "so-inv-eg": "policies: {child_processes: allow}\n" + _EGRESS,
    "so-warm": "policies: {child_processes: allow}\nisolation: warm\n",
    "so-warm-eg": "policies: {child_processes: allow}\nisolation: warm\n" + _EGRESS,
    "so-inv-block": "",  # child_processes: block (the default): the process-call watch
    "so-warm-block": "isolation: warm\n",
}
EVERY_KIND = pytest.mark.parametrize("fn", list(KINDS))
ALLOWING = pytest.mark.parametrize("fn", [f for f in KINDS if "allow" in KINDS[f]])

STATE = r'''
import importlib, logging, os, sys

SEEN_AT_IMPORT = {"env": dict(os.environ), "handlers": len(logging.getLogger().handlers)}


class _Poison:
    """A finder that would serve any module name from nowhere."""

    def find_spec(self, name, target=None):
        return None


def handler(event, context):
    op = event.get("op")
    out = {
        "env": {k: v for k, v in os.environ.items()},
        "root_level": logging.getLogger().level,
        "root_handlers": [type(h).__name__ for h in logging.getLogger().handlers],
        "stdout": type(sys.stdout).__name__,
        "line_buffering": getattr(sys.stdout, "line_buffering", None),
        "fn_finder": type(sys.path_importer_cache.get("/fn")).__name__,
        "deps_finder": type(sys.path_importer_cache.get("/fn/.deps")).__name__,
        "at_import": SEEN_AT_IMPORT,
    }
    logging.getLogger().info("call %s", context.aws_request_id)
    print("printed", context.aws_request_id)
    if op == "taint":
        os.environ["SO_TAINT"] = context.aws_request_id
        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "tampered"
        logging.getLogger().addHandler(logging.NullHandler())
        logging.getLogger().setLevel(logging.CRITICAL)
        sys.path_importer_cache["/fn"] = _Poison()
        sys.path_importer_cache["/fn/.deps"] = _Poison()
        sys.stdout.reconfigure(line_buffering=False)
        out["secret_in_env"] = any(
            context.secrets["so-state-s"] in v for v in os.environ.values()
        )
    if op == "lazy":
        out["lazy"] = importlib.import_module("lazymod").WHERE
    return out
'''


def _deploy(node: LiveNode, directory: Path) -> None:
    """Deploy `directory` past the scan gate (these functions use ctypes and subprocess
    on purpose, to attack the sandbox; the gate is not what they test), its
    requirements vendored from the wheel `_write` made beside it."""
    wheels = directory.parent / "wheels"
    _, archive = build_bundle(directory, find_links=wheels if wheels.is_dir() else None)
    with node.client() as c:
        r = c.post("/v1/functions", content=archive, params={"unsafe_skip_scan": "true"})
    assert r.status_code == 201, f"deploy of {directory.name}: {r.status_code} {r.text}"


def _write(directory: Path, files: dict[str, str]) -> Path:
    """A function's source in `directory`/fn from `files`; those under `.deps/` go into
    a wheel (`sodeps`) that its requirements.txt names, as a deploy vendors them."""
    src = directory / "fn"
    deps = {rel[len(".deps/") :]: text for rel, text in files.items() if rel.startswith(".deps/")}
    for rel, text in files.items():
        if rel.startswith(".deps/"):
            continue
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if deps:
        wheels = directory / "wheels"
        wheels.mkdir()
        with zipfile.ZipFile(wheels / "sodeps-1.0-py3-none-any.whl", "w") as whl:
            for rel, text in deps.items():
                whl.writestr(rel, text)
            info = "sodeps-1.0.dist-info"
            whl.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: sodeps\nVersion: 1.0\n")
            whl.writestr(
                f"{info}/WHEEL",
                "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            )
            whl.writestr(f"{info}/RECORD", "")
        (src / "requirements.txt").write_text("sodeps==1.0\n")
    return src


@pytest.fixture(scope="module")
def once_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node that may grant egress to 127.0.0.2, with every function these attacks use."""
    live = start_node(
        tmp_path_factory.mktemp("supervisor-once"),
        {"DONJON_EGRESS_ALLOW_NETWORKS": "127.0.0.2/32"},
    )
    try:
        with live.client() as c:
            r = c.post("/v1/secrets/so-state-s", json={"value": "DJSECRETonce9f3e1c"})
            assert r.status_code == 201, r.text
        for name, extra in KINDS.items():
            d = _write(
                tmp_path_factory.mktemp(name),
                {
                    "main.py": CAPS,
                    "donjon.yaml": f"name: {name}\nhandler: main.handler\nmemory_mb: 64\n"
                    f"timeout_s: 20\n{extra}",
                },
            )
            _deploy(live, d)
        for name, extra in (("so-state", ""), ("so-state-warm", "isolation: warm\n")):
            d = _write(
                tmp_path_factory.mktemp(name),
                {
                    "main.py": STATE,
                    "lazymod.py": 'WHERE = "bundle"\n',
                    ".deps/depmod.py": 'WHERE = "deps"\n',
                    "donjon.yaml": f"name: {name}\nhandler: main.handler\nmemory_mb: 64\n"
                    f"timeout_s: 10\nlog_level: INFO\n"
                    f"permissions: {{secrets: [so-state-s]}}\n{extra}",
                },
            )
            _deploy(live, d)
        yield live
    finally:
        live.stop()
        shutil.rmtree(live.data_dir, ignore_errors=True)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _is_runtime(pid: int) -> bool:
    """An interpreter running the sandbox runtime (not bubblewrap, whose argv names it)."""
    argv = _cmdline(pid).split(b"\0")
    return b"python" in argv[0] and any(a.endswith(b"donjon_runtime/boot.py") for a in argv)


def _caps(pid: int) -> dict[str, int] | None:
    """The five capability sets of `pid` as the host's /proc shows them (None: gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: int(fields[k], 16) for k in _SETS}


def _runtime(node: LiveNode, fn: str) -> tuple[list[int], list[int]]:
    """Host pids of `fn`'s sandbox runtime: its supervisors, and every other runtime
    process (workers, egress intermediates, spares), each a copy of a supervisor."""
    digest = bundle_dir(node, fn).name.encode()
    supervisors: list[int] = []
    others: list[int] = []
    for root in children(node.proc.pid):
        if digest not in _cmdline(root):
            continue
        for pid in descendants(root):
            if not _is_runtime(pid):
                continue
            try:
                ppid = int(
                    next(
                        line.split()[1]
                        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if line.startswith("PPid:")
                    )
                )
            except (OSError, StopIteration):
                continue
            is_copy = _is_runtime(ppid)
            (others if is_copy else supervisors).append(pid)
    return supervisors, others


#: How long a copy of the supervisor may keep its capabilities while it makes a worker
#: (a worker confining itself, an egress intermediate making its namespaces): ms at
#: most, before any function code; far past that on a loaded machine.
_SETTING_UP_S = 2.0


def _check_host_view(node: LiveNode, fn: str) -> int:
    """Every runtime process of `fn` as the host sees it: a supervisor holds at most
    what it needs, effective and permitted, with nothing to pass on; every other holds
    no capability at all (one caught setting up, a worker before it confines itself or
    an intermediate before its worker is made, must have none `_SETTING_UP_S` later).
    How many of the others were seen."""
    supervisors, others = _runtime(node, fn)
    assert supervisors, f"no supervisor of {fn} found"
    for pid in supervisors:
        caps = _caps(pid)
        if caps is None:
            continue
        assert caps["CapBnd"] == 0, (fn, "supervisor", pid, caps)
        assert caps["CapInh"] == 0 and caps["CapAmb"] == 0, (fn, "supervisor", pid, caps)
        assert caps["CapPrm"] & ~_SUPERVISOR_MAY_HOLD == 0, (fn, "supervisor", pid, caps)
        assert caps["CapEff"] & ~caps["CapPrm"] == 0, (fn, "supervisor", pid, caps)
    seen = 0
    holding = []
    for pid in others:
        caps = _caps(pid)
        if caps is None:
            continue
        seen += 1
        # Never a bounding, inheritable or ambient capability, even setting up.
        assert caps["CapBnd"] == caps["CapInh"] == caps["CapAmb"] == 0, (fn, pid, caps)
        if caps != dict.fromkeys(_SETS, 0):
            holding.append(pid)
    if holding:
        time.sleep(_SETTING_UP_S)
        for pid in holding:
            caps = _caps(pid)
            assert caps is None or caps == dict.fromkeys(_SETS, 0), (fn, "worker", pid, caps)
    return seen


@EVERY_KIND
def test_no_runtime_process_but_the_supervisor_holds_a_capability_between_calls(
    once_node: LiveNode, fn: str
) -> None:
    """Seen from the host after a call: the supervisor's bounding, inheritable and
    ambient sets are empty; every worker, spare and egress intermediate holds nothing."""
    attack(once_node, fn, "status")
    seen = _check_host_view(once_node, fn)
    if fn.startswith("so-warm"):
        assert seen >= 1, "the warm worker was not found"


@EVERY_KIND
def test_no_runtime_process_but_the_supervisor_holds_a_capability_while_a_call_runs(
    once_node: LiveNode, fn: str
) -> None:
    """Seen from the host while a call runs: the worker serving it (and, with egress,
    its intermediate parent) holds no capability in any set."""
    answers: list[Any] = []
    caller = threading.Thread(
        target=lambda: answers.append(once_node.invoke(fn, {"op": "hold", "s": 6}))
    )
    caller.start()
    need = 2 if fn.endswith("-eg") else 1
    try:
        # Until the call's processes are seen (a fresh sandbox and its egress helper
        # may take seconds to start on a loaded machine), within the 6 s hold.
        deadline = time.monotonic() + 5.5
        seen = 0
        while seen < need and time.monotonic() < deadline:
            seen = max(seen, _check_host_view(once_node, fn))
            time.sleep(0.2)
        assert seen >= need, f"no worker of {fn} seen"
    finally:
        caller.join(60)
    assert answers and answers[0].status_code == 200, answers


@EVERY_KIND
def test_function_code_holds_no_capability_at_import_or_in_a_call(
    once_node: LiveNode, fn: str
) -> None:
    """From inside, at import and in a call (twice: a warm worker's second call too):
    every set empty, no_new_privs set."""
    for _ in range(2):
        out = attack(once_node, fn, "status")
        for when in ("import", "call"):
            for field in _SETS:
                assert int(out[when][field], 16) == 0, (fn, when, field, out[when])
            assert out[when]["NoNewPrivs"] == "1", (fn, when, out[when])


@ALLOWING
def test_function_cannot_regain_a_capability(once_node: LiveNode, fn: str) -> None:
    """capset, an ambient raise, a user namespace of its own or a program it executes
    (set-user-id or file capabilities included) give a function no capability back."""
    out = attack(once_node, fn, "regain")
    assert out["capset"] != "ok", out
    assert out["ambient_raise"] != "ok", out
    assert out["bounding_held"] == [], out
    assert out["unshare_user"] != "ok", out
    for field in _SETS:
        assert int(out["status_after"][field], 16) == 0, (field, out)
    exec_status = out["exec_status"]
    assert isinstance(exec_status, dict), exec_status
    for field in _SETS:
        assert int(exec_status[field], 16) == 0, (field, exec_status)
    assert exec_status["NoNewPrivs"] == "1", exec_status
    for path, mode, file_caps, nosuid in out["special"]:
        assert nosuid, f"{path} ({mode}, file capabilities: {file_caps}) on a suid mount"


# Environment, logging, stdout and finders: what a call changes stays in its worker.

#: What the supervisor's environment holds, by name: bubblewrap's and Lambda's.
_ENV_KEYS = {
    "HOME",
    "TMPDIR",
    "LANG",
    "PATH",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_LOG_LEVEL",
    "LAMBDA_TASK_ROOT",
    "_HANDLER",
}


def _logs(node: LiveNode, fn: str, request_id: str) -> str:
    with node.client() as c:
        rows = c.get(f"/v1/functions/{fn}/logs", params={"n": 50}).json()
    return str(next(row["output"] for row in rows if row["request_id"] == request_id))


def _call(node: LiveNode, fn: str, op: str) -> tuple[dict[str, Any], str]:
    r = node.invoke(fn, {"op": op})
    assert r.status_code == 200, r.text
    return r.json(), r.headers["x-request-id"]


@pytest.mark.parametrize("fn", ["so-state", "so-state-warm"])
def test_environment_holds_lambdas_variables_and_nothing_secret(
    once_node: LiveNode, fn: str
) -> None:
    """At import and in a call the environment is bubblewrap's and Lambda's variables,
    no granted secret and no request's id; the log stream is the sandbox's."""
    out, request_id = _call(once_node, fn, "look")
    for env in (out["at_import"]["env"], out["env"]):
        assert set(env) - {"PWD"} == _ENV_KEYS, sorted(env)
        assert env["AWS_LAMBDA_FUNCTION_NAME"] == fn
        assert env["AWS_LAMBDA_LOG_LEVEL"] == "INFO"
        assert env["LAMBDA_TASK_ROOT"] == "/fn"
        assert env["_HANDLER"] == "main.handler"
        assert re.fullmatch(
            r"\d{4}/\d{2}/\d{2}/\[\d+\][0-9a-f]{32}", env["AWS_LAMBDA_LOG_STREAM_NAME"]
        )
        assert "DJSECRETonce9f3e1c" not in str(env)
        assert request_id not in str(env)


@pytest.mark.parametrize("fn", ["so-state", "so-state-warm"])
def test_log_lines_carry_each_calls_own_request_id(once_node: LiveNode, fn: str) -> None:
    """logging (preloaded: the bundle imports it) writes Lambda's format at the manifest's
    level with the call's request id, after the call's print, for each of two calls."""
    for _ in range(2):
        out, request_id = _call(once_node, fn, "look")
        assert out["root_handlers"] == ["StreamHandler"], out
        assert out["root_level"] == 20, out
        assert out["at_import"]["handlers"] == 1, out
        assert out["line_buffering"] is True, out
        output = _logs(once_node, fn, request_id)
        assert re.fullmatch(
            rf"\[INFO\]\t\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z\t{request_id}\t"
            rf"call {request_id}\nprinted {request_id}\n",
            output,
        ), output


def test_one_calls_changes_do_not_reach_the_next_call(once_node: LiveNode) -> None:
    """isolation invocation: a call that changes the environment, the root logger, stdout
    and the import system's cached finders leaves the next call (a fresh copy of the
    supervisor) with none of it."""
    first, first_id = _call(once_node, "so-state", "taint")
    assert first["secret_in_env"] is False
    for _ in range(2):
        out, _request_id = _call(once_node, "so-state", "lazy")
        assert "SO_TAINT" not in out["env"], out["env"]
        assert out["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "so-state"
        assert first_id not in str(out), out
        assert out["root_handlers"] == ["StreamHandler"], out
        assert out["root_level"] == 20, out
        assert out["line_buffering"] is True, out
        # The finders a call finds are the supervisor's (or none yet, on the base), never
        # the ones the last call put in the cache.
        assert out["fn_finder"] == "FileFinder", out
        assert out["deps_finder"] in ("FileFinder", "NoneType"), out
        assert out["lazy"] == "bundle", out


def test_warm_calls_share_one_process_as_before(once_node: LiveNode) -> None:
    """isolation warm: one process serves the calls, so what a call changes is there for
    the next, exactly as before the supervisor set these up (the warm contract); the next
    call's output is its own (no log line: the level is CRITICAL now)."""
    _call(once_node, "so-state-warm", "look")  # the worker is up
    first, first_id = _call(once_node, "so-state-warm", "taint")
    assert first["secret_in_env"] is False
    out, request_id = _call(once_node, "so-state-warm", "look")
    assert _logs(once_node, "so-state-warm", request_id) == f"printed {request_id}\n"
    assert out["env"]["SO_TAINT"] == first_id
    assert out["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "tampered"
    assert out["root_level"] == 50
    assert out["root_handlers"] == ["StreamHandler", "NullHandler"]
    assert out["fn_finder"] == out["deps_finder"] == "_Poison"
    assert out["line_buffering"] is False


# Imports: the finders the supervisor made serve every shape of bundle as before.

IMPORTS = r"""
import importlib, sys

import pkg.sub
import nspkg.mod
import deppkg.inner
import depmod
import calendar
import heapq
import shadowme

ORDER = [p for p in sys.path[:2]]
FOUND = {
    "pkg.sub": pkg.sub.WHERE,
    "nspkg.mod": nspkg.mod.WHERE,
    "nspkg.path": [str(p) for p in nspkg.__path__],
    "deppkg.inner": deppkg.inner.WHERE,
    "depmod": depmod.WHERE,
    # calendar is preloaded (the bundle names it): the standard library's stays.
    "calendar": getattr(calendar, "WHERE", "stdlib"),
    # heapq is not in the bundle's preload list but is imported by the standard
    # library at start: its shadow in the bundle is not used either.
    "heapq": getattr(heapq, "WHERE", "stdlib"),
    "shadow": shadowme.WHERE,
}


def handler(event, context):
    out = dict(FOUND)
    out["order"] = ORDER
    try:
        out["lazy"] = importlib.import_module("lazymod").WHERE
    except Exception as e:
        out["lazy"] = type(e).__name__
    try:
        out["lazy_dep"] = importlib.import_module("lazydep").WHERE
    except Exception as e:
        out["lazy_dep"] = type(e).__name__
    try:
        importlib.import_module("no_such_module_here")
        out["missing"] = "found"
    except ImportError as e:
        out["missing"] = type(e).__name__
    return out
"""

_IMPORT_FILES = {
    "main.py": IMPORTS,
    "pkg/__init__.py": "",
    "pkg/sub.py": 'WHERE = "bundle pkg"\n',
    "nspkg/mod.py": 'WHERE = "bundle namespace"\n',
    ".deps/nspkg/dep.py": 'WHERE = "deps namespace"\n',
    ".deps/deppkg/__init__.py": "",
    ".deps/deppkg/inner.py": 'WHERE = "deps pkg"\n',
    ".deps/depmod.py": 'WHERE = "deps"\n',
    ".deps/lazydep.py": 'WHERE = "deps lazy"\n',
    "lazymod.py": 'WHERE = "bundle lazy"\n',
    "calendar.py": 'WHERE = "bundle"\n',
    "heapq.py": 'WHERE = "bundle"\n',
    # In both: the bundle comes first on sys.path.
    "shadowme.py": 'WHERE = "bundle"\n',
    ".deps/shadowme.py": 'WHERE = "deps"\n',
}

#: What each import finds (the same on the base, 6ce8035, without the cached finders).
_EXPECTED = {
    "pkg.sub": "bundle pkg",
    "nspkg.mod": "bundle namespace",
    "nspkg.path": ["/fn/nspkg", "/fn/.deps/nspkg"],
    "deppkg.inner": "deps pkg",
    "depmod": "deps",
    "calendar": "stdlib",
    "heapq": "stdlib",
    "order": ["/fn", "/fn/.deps"],
    "lazy_dep": "deps lazy",
    "missing": "ModuleNotFoundError",
    "shadow": "bundle",
}

#: (policies, lazy import of a bundle module in a call, with .deps): each bundle shape.
_IMPORT_KINDS = {
    "so-imp": ("{}", "bundle lazy"),
    "so-imp-warm": ("{}", "bundle lazy"),
    # The bundle hidden after the import: a lazy import of a bundle module fails.
    "so-imp-hidden": ("{read_own_code: block}", "PermissionError"),
    "so-imp-hidden-warm": ("{read_own_code: block}", "PermissionError"),
}


NODEPS = r"""
import importlib, sys
import helper


def handler(event, context):
    out = {"helper": helper.WHERE, "order": sys.path[:2]}
    out["deps"] = repr(sys.path_importer_cache.get("/fn/.deps", "absent"))
    try:
        importlib.import_module("no_such_module_here")
        out["missing"] = "found"
    except ImportError as e:
        out["missing"] = type(e).__name__
    importlib.import_module("colorsys")  # not preloaded: found past /fn and /fn/.deps
    out["stdlib"] = "ok"
    return out
"""


@pytest.fixture(scope="module")
def import_node(once_node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> LiveNode:
    """once_node with the import bundles deployed, and one with no .deps at all."""
    for name, (policies, _lazy) in _IMPORT_KINDS.items():
        warm = "isolation: warm\n" if name.endswith("-warm") else ""
        files = {
            **_IMPORT_FILES,
            "donjon.yaml": f"name: {name}\nhandler: main.handler\nmemory_mb: 64\n"
            f"timeout_s: 10\npolicies: {policies}\n{warm}",
        }
        _deploy(once_node, _write(tmp_path_factory.mktemp(name), files))
    for name, warm in (("so-nodeps", ""), ("so-nodeps-warm", "isolation: warm\n")):
        files = {
            "main.py": NODEPS,
            "helper.py": 'WHERE = "bundle"\n',
            "donjon.yaml": f"name: {name}\nhandler: main.handler\nmemory_mb: 64\n"
            f"timeout_s: 10\n{warm}",
        }
        _deploy(once_node, _write(tmp_path_factory.mktemp(name), files))
    return once_node


@pytest.mark.parametrize("fn", list(_IMPORT_KINDS))
def test_bundle_imports_find_what_they_found_before(import_node: LiveNode, fn: str) -> None:
    """Packages, namespace packages across the bundle and .deps, .deps modules, stdlib
    shadows and lazy imports in a call resolve as on the base, twice."""
    for _ in range(2):
        out = attack(import_node, fn, "")
        for key, want in _EXPECTED.items():
            assert out[key] == want, (fn, key, out)
        assert out["lazy"] == _IMPORT_KINDS[fn][1], (fn, out)


@pytest.mark.parametrize("fn", ["so-nodeps", "so-nodeps-warm"])
def test_bundle_without_deps_imports_from_the_bundle(import_node: LiveNode, fn: str) -> None:
    """No .deps: the bundle's modules import, a module in neither is not found, and the
    standard library is reached past the missing directory (cached as no finder, None,
    as importlib records a path no hook takes; the base had no entry until an import
    looked past /fn)."""
    out = attack(import_node, fn, "")
    assert out["helper"] == "bundle", out
    assert out["order"] == ["/fn", "/fn/.deps"], out
    assert out["missing"] == "ModuleNotFoundError", out
    assert out["stdlib"] == "ok", out
    assert out["deps"] in ("None", "'absent'"), out


ZIPPED = r"""
import sys
import zipdep


def handler(event, context):
    return {"zipdep": zipdep.WHERE, "finder": type(sys.path_importer_cache["/fn/.deps"]).__name__}
"""


@pytest.mark.parametrize("warm", [False, True], ids=["invocation", "warm"])
def test_deps_as_a_zip_file_imports_as_before(
    once_node: LiveNode, tmp_path: Path, warm: bool
) -> None:
    """A bundle archive (uploaded as is, not built) whose `.deps` is a zip file, not a
    directory: the supervisor, which now makes the finder of `.deps`, reads its listing
    and lives; the worker imports from it through zipimport, as the base's worker did."""
    name = f"so-zip{'-warm' if warm else ''}"
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "main.py").write_text(ZIPPED)
    (root / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
        + ("isolation: warm\n" if warm else "")
    )
    with zipfile.ZipFile(root / ".deps", "w") as z:
        z.writestr("zipdep.py", 'WHERE = "zip"\n')
    with once_node.client() as c:
        r = c.post("/v1/functions", content=pack(root), params={"unsafe_skip_scan": "true"})
    assert r.status_code == 201, r.text
    for _ in range(2):
        assert attack(once_node, name, "") == {"zipdep": "zip", "finder": "zipimporter"}


def test_a_huge_zip_as_deps_is_read_by_the_worker_under_its_limits(
    once_node: LiveNode, tmp_path: Path
) -> None:
    """A hand-made archive whose `.deps` is a zip of 65,000 long names (zipimport's
    listing of it takes some 260 MB): the worker reads it, under its memory_mb, and the
    import fails as on the base; the supervisor (no memory rlimit, kept out of the OOM
    killer's choice) never holds it, nor lets every worker inherit it."""
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "main.py").write_text(
        "import zipdep\ndef handler(event, context):\n    return {'zipdep': zipdep.WHERE}\n"
    )
    (root / "donjon.yaml").write_text(
        "name: so-bigzip\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 10\n"
    )
    with zipfile.ZipFile(root / ".deps", "w") as z:
        for i in range(65_000):
            z.writestr(f"d{i:05d}/" + "x" * 1780 + ".py", "")
        z.writestr("zipdep.py", 'WHERE = "zip"\n')
    # Incompressible bytes, so the archive may unpack to the 240 MB (50 times its size).
    (root / "pad.bin").write_bytes(os.urandom(5_200_000))
    with once_node.client() as c:
        r = c.post("/v1/functions", content=pack(root), params={"unsafe_skip_scan": "true"})
    try:
        supervisors, _ = _runtime(once_node, "so-bigzip") if r.status_code == 201 else ([], [])
        for pid in supervisors:
            rss_kb = int(
                next(
                    line.split()[1]
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmRSS:")
                )
            )
            assert rss_kb < 64 * 1024, f"the supervisor holds {rss_kb} KiB"
        assert r.status_code == 422, r.text
        assert "failed to import" in r.json()["detail"], r.text
    finally:
        with once_node.client() as c:
            c.delete("/v1/functions/so-bigzip")
