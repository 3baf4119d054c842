"""What the deploy gate reads: credentials and vulnerable dependencies a bundle holds in
forms or places the scan used to pass over. Each bundle is a hand-made archive sent to
a real node; the gate must refuse it (422) as it refuses the same thing in main.py or
requirements.txt."""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import json
import marshal
import sys
import threading
from collections.abc import Iterator, Mapping

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness import LiveNode, start_node

_MANIFEST = b"name: reach\nhandler: main.handler\nmemory_mb: 128\ntimeout_s: 10\n"
_MAIN = b"def handler(event, context):\n    return {'ok': True}\n"
_AWS_ID = "AKIAZ7QW4RT5YU8IOP3L"
_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYz9Qm3Lk2Vb"
_GITHUB = "ghp_Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
#: requests 2.19.0: PYSEC-2018-28 (CVE-2018-18074), in the offline PyPA database.
_VULNERABLE = ("requests", "2.19.0")


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node of this module's own, with the offline advisory database."""
    live = start_node(tmp_path_factory.mktemp("gate-reach"))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def dev_key(own: LiveNode) -> str:
    key: str = own.create_key("gate-reach", "developer")["key"]
    return key


def _deploy(node: LiveNode, key: str, files: Mapping[str, bytes]) -> httpx.Response:
    """A bundle of `files` (with donjon.yaml and a clean main.py), sent as it is."""
    return node.deploy_files(key, {"donjon.yaml": _MANIFEST, "main.py": _MAIN, **files})


def _blocked(r: httpx.Response, rule: str) -> None:
    assert r.status_code == 422, r.text
    assert "block this deploy" in r.json()["detail"], r.text
    assert any(p.startswith(rule) for p in r.json()["problems"]), r.text


def _private_key() -> bytes:
    """A fresh Ed25519 key in OpenSSH's format, as `ssh-keygen` writes `id_ed25519`."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def test_private_key_file_without_a_suffix_is_blocked(own: LiveNode, dev_key: str) -> None:
    """An SSH private key shipped as `deploy/id_ed25519` (no suffix) blocks the deploy."""
    r = _deploy(own, dev_key, {"deploy/id_ed25519": _private_key()})
    _blocked(r, "DJ-SEC-002")


def test_aws_credentials_file_is_blocked(own: LiveNode, dev_key: str) -> None:
    """An AWS shared credentials file (`.aws/credentials`) blocks the deploy."""
    text = f"[default]\naws_access_key_id = {_AWS_ID}\naws_secret_access_key = {_AWS_SECRET}\n"
    _blocked(_deploy(own, dev_key, {".aws/credentials": text.encode()}), "DJ-SEC-001")


def test_token_in_a_notebook_is_blocked(own: LiveNode, dev_key: str) -> None:
    """A GitHub token in a Jupyter notebook's code cell blocks the deploy."""
    notebook = {
        "cells": [{"cell_type": "code", "source": [f'TOKEN = "{_GITHUB}"\n']}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    r = _deploy(own, dev_key, {"explore.ipynb": json.dumps(notebook, indent=1).encode()})
    _blocked(r, "DJ-SEC-001")


def test_token_in_a_template_file_is_blocked(own: LiveNode, dev_key: str) -> None:
    """A token in a Jinja template (`templates/page.html.j2`) blocks the deploy."""
    page = f"<script>fetch(url, {{headers: {{a: '{_GITHUB}'}}}})</script>\n".encode()
    _blocked(_deploy(own, dev_key, {"templates/page.html.j2": page}), "DJ-SEC-001")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_token_in_a_utf16_config_file_is_blocked(
    own: LiveNode, dev_key: str, encoding: str
) -> None:
    """A token in a config file saved as UTF-16 with its byte order mark (what Windows
    PowerShell's `>` writes) blocks the deploy: its NUL bytes do not make it binary."""
    text = json.dumps({"github_token": _GITHUB}, indent=1)
    _blocked(_deploy(own, dev_key, {"config.json": text.encode(encoding)}), "DJ-SEC-001")


def test_token_in_a_source_map_is_blocked(own: LiveNode, dev_key: str) -> None:
    """A token in the sources a JavaScript source map embeds (`sourcesContent`, served
    beside a bundled front end) blocks the deploy: a `.map` is text, not binary."""
    source_map = {
        "version": 3,
        "sources": ["src/api.js"],
        "sourcesContent": [f"export const client = new Octokit({{auth: '{_GITHUB}'}});\n"],
        "mappings": "AAAA,OAAO,MAAM",
    }
    r = _deploy(own, dev_key, {"static/app.js.map": json.dumps(source_map).encode()})
    _blocked(r, "DJ-SEC-001")


def test_dependency_vendored_at_the_bundle_root_is_blocked(own: LiveNode, dev_key: str) -> None:
    """A vulnerable distribution installed Lambda-style at the bundle's root (`pip install
    -t .`, importable from /fn as much as from .deps/) blocks the deploy."""
    name, version = _VULNERABLE
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()
    files = {
        f"{name}/__init__.py": b"__version__ = '2.19.0'\n",
        f"{name}-{version}.dist-info/METADATA": meta,
    }
    _blocked(_deploy(own, dev_key, files), "DJ-DEP-001")


def test_requirement_include_without_a_space_is_read(own: LiveNode, dev_key: str) -> None:
    """`-rbase.txt` (pip's short option with its value attached) is followed: a vulnerable
    pin in the included file blocks the deploy."""
    name, version = _VULNERABLE
    files = {
        "requirements.txt": b"-rbase.txt\n",
        "base.txt": f"{name}=={version}\n".encode(),
    }
    _blocked(_deploy(own, dev_key, files), "DJ-DEP-001")


# -- byte-code the gate never read ------------------------------------------------------

_SCANNED = b"def handler(event, context):\n    return {'ran': 'source'}\n"
#: What the gate refuses (DJ-PY-002: event data reaches eval), compiled to byte-code.
_HIDDEN = "def handler(event, context):\n    return {'ran': 'bytecode', 'v': eval(event['code'])}\n"


def _unchecked_pyc(source: str, filename: str) -> bytes:
    """`source` compiled as `donjon deploy` compiles a bundle: an unchecked-hash pyc,
    which Python imports without looking at the source beside it."""
    code = compile(source, filename, "exec", dont_inherit=True)
    flags = (0b01).to_bytes(4, "little")  # hash-based, unchecked
    return importlib.util.MAGIC_NUMBER + flags + b"\0" * 8 + marshal.dumps(code)


@pytest.fixture(scope="module")
def cache_tag(own: LiveNode) -> str:
    """The sandbox's `sys.implementation.cache_tag` (the pyc's must be its own)."""
    with own.client() as c:
        version = c.get("/v1/runtime").json()["python"]["python_version"]
    if version != f"{sys.version_info[0]}.{sys.version_info[1]}":
        pytest.skip(f"the sandbox runs Python {version}, these tests {sys.version}")
    return sys.implementation.cache_tag


def _ran(node: LiveNode, key: str, files: Mapping[str, bytes]) -> str:
    """What a deploy of `files` runs when invoked: "refused" if the deploy is refused."""
    r = _deploy(node, key, files)
    if r.status_code != 201:
        assert 400 <= r.status_code < 500, r.text
        return "refused"
    with node.client(key) as c:
        called = c.post("/v1/functions/reach/invoke", content=b'{"code": "1"}')
    assert called.status_code in (200, 500, 502), called.text
    return str(called.json().get("ran", "failed")) if called.status_code == 200 else "failed"


def test_bytecode_beside_scanned_source_is_not_what_runs(
    own: LiveNode, dev_key: str, cache_tag: str
) -> None:
    """A hand-made `__pycache__/main.<tag>.pyc` compiled from code the gate refuses, beside
    a clean main.py, never runs: the function runs the source the gate scanned."""
    pyc = _unchecked_pyc(_HIDDEN, "/fn/main.py")
    files = {"main.py": _SCANNED, f"__pycache__/main.{cache_tag}.pyc": pyc}
    assert _ran(own, dev_key, files) in ("source", "refused")


def test_sourceless_bytecode_module_does_not_run(
    own: LiveNode, dev_key: str, cache_tag: str
) -> None:
    """A module shipped only as byte-code (`impl.pyc`, no impl.py: Python imports it from
    the bundle's root) is code the gate never read: it does not run."""
    main = b"from impl import handler\n"
    files = {"main.py": main, "impl.pyc": _unchecked_pyc(_HIDDEN, "/fn/impl.py")}
    assert _ran(own, dev_key, files) in ("refused", "failed")


@pytest.mark.parametrize("suffix", importlib.machinery.EXTENSION_SUFFIXES)
def test_native_module_beside_scanned_source_is_not_what_runs(
    own: LiveNode, dev_key: str, suffix: str
) -> None:
    """A native extension named as a scanned module (`impl<suffix>` beside impl.py):
    Python's import takes an extension module before the source, so the code that ran
    was one the gate never read. The function runs its scanned source. (The module is
    imported by the call, not at the deploy's prestart; any bytes show which file the
    import took.)"""
    files = {
        "main.py": b"def handler(event, context):\n    import impl\n    return impl.run()\n",
        "impl.py": f"def run():  # {suffix}\n    return {{'ran': 'source'}}\n".encode(),
        f"impl{suffix}": b"\x7fELF not the scanned module",
    }
    assert _ran(own, dev_key, files) == "source"


@pytest.mark.parametrize("suffix", importlib.machinery.EXTENSION_SUFFIXES)
def test_native_package_shadowing_scanned_source_is_not_what_runs(
    own: LiveNode, dev_key: str, suffix: str
) -> None:
    """A directory `impl/` holding only a native `__init__<suffix>`, beside a scanned
    impl.py: Python's import takes the package before the module, so the code that ran
    was one the gate never read. The function runs its scanned source."""
    files = {
        "main.py": b"def handler(event, context):\n    import impl\n    return impl.run()\n",
        "impl.py": f"def run():  # {suffix}\n    return {{'ran': 'source'}}\n".encode(),
        f"impl/__init__{suffix}": b"\x7fELF not the scanned module",
    }
    assert _ran(own, dev_key, files) == "source"


def test_module_with_a_latin1_comment_is_scanned(own: LiveNode, dev_key: str) -> None:
    """A handler whose comment holds a byte that is not UTF-8 (an editor saved "café" in
    Latin-1): Python 3.11 imports and runs it, so the gate reads it and blocks the shell
    command event data builds."""
    main = (
        b"import os\n\n\n"
        b"def handler(event, context):  # caf\xe9\n"
        b"    return os.popen('ls ' + event['dir']).read()\n"
    )
    _blocked(_deploy(own, dev_key, {"main.py": main}), "DJ-PY-001")


def test_config_file_with_a_latin1_comment_is_scanned(own: LiveNode, dev_key: str) -> None:
    """A password in a YAML config whose comment is Latin-1 (not UTF-8) blocks the deploy:
    one stray byte does not make the gate pass over the whole file."""
    config = b"# owner: M\xfcller\ndatabase:\n  password: k9Jx2mQ8vLp4Rz7WbN3c\n"
    _blocked(_deploy(own, dev_key, {"config.yaml": config}), "DJ-SEC-003")


@pytest.mark.parametrize(
    "line",
    [
        # a settings class's field: the line rule read `password: str` as an annotation
        "class Settings:\n    db_password: str = 'k9Jx2mQ8vLp4Rz7WbN3c'\n",
        # a default for an unset variable is the credential, hard-coded
        "import os\nTOKEN = os.getenv('API_TOKEN', 'k9Jx2mQ8vLp4Rz7WbN3c')\n",
        "import os\nos.environ.setdefault('DB_PASSWORD', 'k9Jx2mQ8vLp4Rz7WbN3c')\n",
        # "token" is no keyword of the line rule's
        "GITHUB_TOKEN = 'k9Jx2mQ8vLp4Rz7WbN3cQ4'\n",
        # the credential of an Authorization header, an auth pair, a login
        "HEADERS = {'Authorization': 'Bearer k9Jx2mQ8vLp4Rz7WbN3c'}\n",
        "import requests\nrequests.get('https://x', auth=('ops', 'k9Jx2mQ8vLp4Rz7WbN3c'))\n",
        "def send(smtp):\n    smtp.login('bot@example.com', 'k9Jx2mQ8vLp4Rz7WbN3c')\n",
    ],
    ids=[
        "annotated-field",
        "getenv-default",
        "environ-setdefault",
        "token-name",
        "bearer-header",
        "auth-pair",
        "login",
    ],
)
def test_credential_written_in_python_is_blocked(own: LiveNode, dev_key: str, line: str) -> None:
    """A random-looking literal that its name, environment variable, header or call says
    is a credential blocks the deploy, in the forms the line rule did not read."""
    _blocked(_deploy(own, dev_key, {"settings.py": line.encode()}), "DJ-SEC-003")


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        # wrapped for the line length, as formatters and reviewers ask: one string to Python
        (f'TOKEN = (\n    "{_GITHUB[:20]}"\n    "{_GITHUB[20:]}"\n)\n', "DJ-SEC-001"),
        (f'KEY_ID = "{_AWS_ID[:8]}" "{_AWS_ID[8:]}"\n', "DJ-SEC-001"),
        (f'TOKEN = "{_GITHUB[:20]}" + "{_GITHUB[20:]}"\n', "DJ-SEC-001"),
        ('DB_PASSWORD = ("k9Jx2mQ8vL"\n    "p4Rz7WbN3c")\n', "DJ-SEC-003"),
    ],
    ids=["implicit-over-lines", "implicit-on-one-line", "plus", "keyword-over-lines"],
)
def test_credential_split_across_literals_is_blocked(
    own: LiveNode, dev_key: str, source: str, rule: str
) -> None:
    """A credential written as literals joined into one string (implicit concatenation,
    `+`) blocks the deploy as it does written whole: no line holds it."""
    _blocked(_deploy(own, dev_key, {"settings.py": source.encode()}), rule)


def test_credentials_past_column_4000_of_a_one_line_config_are_blocked(
    own: LiveNode, dev_key: str
) -> None:
    """A JSON config written on one line (`json.dump` without indent) whose password and
    token come after 4,000 characters of other settings blocks the deploy."""
    config: dict[str, object] = {f"setting{i}": "v" * 20 for i in range(200)}
    config["database"] = {"password": "k9Jx2mQ8vLp4Rz7WbN3c"}
    config["github"] = _GITHUB
    r = _deploy(own, dev_key, {"config.json": json.dumps(config).encode()})
    _blocked(r, "DJ-SEC-001")
    _blocked(r, "DJ-SEC-003")


@pytest.mark.parametrize("name", ["static/app.min.js", "settings.py"])
def test_token_past_column_4000_of_a_line_of_code_is_blocked(
    own: LiveNode, dev_key: str, name: str
) -> None:
    """A token after 4,000 characters of a line of code (a minified front-end bundle, a
    long literal table) blocks the deploy: a token's own format needs no context."""
    if name.endswith(".js"):
        code = "var a=1;" * 600 + f'var t="{_GITHUB}";\n'
    else:
        code = "CFG = {" + ", ".join(f'"k{i}": {i}' for i in range(600)) + f', "g": "{_GITHUB}"}}\n'
    _blocked(_deploy(own, dev_key, {name: code.encode()}), "DJ-SEC-001")


# -- what the gate spends on a bundle --------------------------------------------------


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def test_wheel_tag_product_does_not_exhaust_the_node(own: LiveNode, dev_key: str) -> None:
    """A vendored WHEEL file whose one compressed tag set (`a.b...-c.d...-e.f...`) names
    millions of combinations in a kilobyte is refused without the node building them:
    the check runs in the node's own process, before the scan."""
    cp, abi, plat = (".".join(f"{p}{i}" for i in range(120)) for p in ("cp", "abi", "plat"))
    wheel = f"Wheel-Version: 1.0\nTag: {cp}-{abi}-{plat}\n"
    files = {
        ".deps/bomb-1.0.dist-info/WHEEL": wheel.encode(),
        ".deps/bomb-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: bomb\nVersion: 1.0\n",
    }
    before = _peak_rss_kib(own.proc.pid)
    r = _deploy(own, dev_key, files)
    grown = _peak_rss_kib(own.proc.pid) - before
    assert 400 <= r.status_code < 500, r.text
    assert grown < 256 * 1024, f"the node's peak RSS grew by {grown // 1024} MiB"
    with own.client() as c:
        assert c.get("/healthz").status_code == 200


def test_records_claiming_the_same_files_again_and_again_are_refused(
    own: LiveNode, dev_key: str
) -> None:
    """Fifty vendored distributions whose RECORDs each list the same thousand modules
    (with their byte-code): the SBOM would hash and look up every file fifty times, in the
    node's own process; the deploy is refused instead, and the node serves."""
    files: dict[str, bytes] = {}
    for i in range(1000):
        files[f".deps/pkg/m{i}.py"] = b"X = 1\n"
        files[f".deps/pkg/__pycache__/m{i}.cpython-311.pyc"] = b"not byte-code"
    record = "".join(f"pkg/m{i}.py,,\n" for i in range(1000)).encode()
    for d in range(50):
        info = f".deps/dist{d}-1.0.dist-info"
        files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: dist{d}\nVersion: 1.0\n".encode()
        files[f"{info}/RECORD"] = record
    r = _deploy(own, dev_key, files)
    assert 400 <= r.status_code < 500, r.text
    assert "RECORD" in r.json()["detail"], r.text
    with own.client() as c:
        assert c.get("/healthz").status_code == 200


def test_archives_being_received_at_once_are_bounded(own: LiveNode, dev_key: str) -> None:
    """Uploads held open mid-archive (each could carry 256 MiB into the node's memory)
    take the deploy queue's places: once their caller holds its share (half of the ten),
    its next deploy is refused (503) before its archive is read, not after; and another
    developer still deploys (one caller's trickles held every place, refusing everyone's
    deploys for as long as their bodies took)."""
    other_key: str = own.create_key("gate-reach-other", "developer")["key"]
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b"\x1f\x8b" + bytes(64 * 1024)
        # A trickle: enough progress that the node's body stall timer never cuts it.
        for _ in range(60):
            if release.wait(2):
                return
            yield bytes(1024)

    def upload() -> None:
        with own.client(dev_key) as c, contextlib.suppress(httpx.HTTPError):
            c.post("/v1/functions", content=slow_body(), timeout=180)

    uploads = [threading.Thread(target=upload, daemon=True) for _ in range(12)]
    replies: list[httpx.Response] = []
    try:
        for t in uploads:
            t.start()
        for _ in range(100):  # bounded: until the held uploads have taken their places
            replies.append(_deploy(own, dev_key, {}))
            if replies[-1].status_code == 503:
                break
            release.wait(0.2)
        other_manifest = _MANIFEST.replace(b"name: reach", b"name: reach-other")
        other = _deploy(own, other_key, {"donjon.yaml": other_manifest})
    finally:
        release.set()
        for t in uploads:
            t.join(60)
    assert replies[-1].status_code == 503, [r.status_code for r in replies]
    assert "your deploys" in replies[-1].json()["detail"], replies[-1].text
    assert other.status_code == 201, other.text
    # Audited as every denial is: the first of its source's window at once (an upload
    # refused the same way may be that first one; later ones are counted into it).
    with own.client() as c:
        tail = c.get("/v1/audit", params={"n": 200}).json()
    assert any(r["action"] == "function.deploy" and r["outcome"] == "denied" for r in tail), tail
    with own.client() as c:
        assert c.get("/healthz").status_code == 200
