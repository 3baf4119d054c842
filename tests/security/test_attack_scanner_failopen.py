"""The deploy gate's scanners as a target: a bundle that makes one of them give up on a
file must fail the deploy, never pass as "no findings". Each bundle is a hand-made
archive sent to a real node, and its code is code Python imports and runs in the
sandbox, so a file the scan passed over would run unchecked."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from harness import LiveNode, start_node

_MANIFEST = b"name: failopen\nhandler: main.handler\nmemory_mb: 128\ntimeout_s: 10\n"
#: Deeper than the scanner's parse reaches at the default recursion limit (about 2,900
#: levels of unary minus), shallower than Python compiles once the limit is raised.
_DEPTH = 4000


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node of this module's own."""
    live = start_node(tmp_path_factory.mktemp("scanner-failopen"))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def dev_key(own: LiveNode) -> str:
    key: str = own.create_key("scanner-failopen", "developer")["key"]
    return key


def _deploy(node: LiveNode, key: str, files: Mapping[str, bytes]) -> httpx.Response:
    """A bundle of `files` with donjon.yaml, sent as it is."""
    return node.deploy_files(key, {"donjon.yaml": _MANIFEST, **files})


def _deploy_named(node: LiveNode, key: str, name: str, main: bytes) -> httpx.Response:
    """A one-module bundle named `name`."""
    manifest = _MANIFEST.replace(b"name: failopen", b"name: " + name.encode())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, data in {"donjon.yaml": manifest, "main.py": main}.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with node.client(key) as c:
        return c.post("/v1/functions", content=buf.getvalue(), timeout=600)


def _refused(r: httpx.Response, words: str) -> None:
    """The deploy failed as a scan error (400), saying why."""
    assert r.status_code == 400, r.text
    assert words in r.json()["detail"], r.text


def test_module_nested_past_the_scanners_parse_is_refused(own: LiveNode, dev_key: str) -> None:
    """A module nested deeper than the scanner's parse reaches, imported by a handler that
    first raises the recursion limit (Python then compiles it): its `eval` of event data
    was noted as "code rules skipped" and deployed. The deploy is refused."""
    main = b"import sys\n\nsys.setrecursionlimit(100000)\nimport impl  # noqa: E402\n\n\n"
    main += b"def handler(event, context):\n    return impl.run(event)\n"
    impl = b"PAD = " + b"-" * _DEPTH + b"1\n\n\ndef run(event):\n"
    impl += b"    return {'result': eval(event['expr']), 'pad': PAD}\n"
    _refused(_deploy(own, dev_key, {"main.py": main, "impl.py": impl}), "too deeply nested")


def test_module_bandit_cannot_walk_is_refused(own: LiveNode, dev_key: str) -> None:
    """Bandit's recursive walk gives up on a module of 2,000 nested lambdas (Python and
    the code scanner read it): Bandit skipped the file in silence, and its rules (here a
    world-writable chmod) passed. The deploy is refused."""
    main = b"import os\n\nPAD = " + b"lambda: " * 2000 + b"1\n\n\n"
    main += b"def handler(event, context):\n    os.chmod('/tmp/shared', 0o777)\n    return {}\n"
    _refused(_deploy(own, dev_key, {"main.py": main}), "Bandit could not analyse")


def test_the_node_serves_a_clean_deploy_after_them(own: LiveNode, dev_key: str) -> None:
    """The refusals above leave the gate working: a clean bundle deploys and runs."""
    main = b"def handler(event, context):\n    return {'ok': True}\n"
    assert _deploy(own, dev_key, {"main.py": main}).status_code == 201
    with own.client(dev_key) as c:
        r = c.post("/v1/functions/failopen/invoke", content=b"{}")
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True}


def test_module_in_the_idna_encoding_is_scanned(own: LiveNode, dev_key: str) -> None:
    """A module whose coding line names idna (Python imports it; the codec refuses the
    lenient decoding the scanner asked of it) crashed the scan: the deploy was refused as
    "stopped unexpectedly", naming nothing. Its code is now read and judged."""
    main = b"# coding: idna\n\n\ndef handler(event, context):\n    return eval(event['expr'])\n"
    r = _deploy(own, dev_key, {"main.py": main})
    assert r.status_code == 422, r.text
    assert "block this deploy" in r.json()["detail"], r.text
    assert any(p.startswith("DJ-PY-") for p in r.json()["problems"]), r.text


@pytest.mark.parametrize("name", ["Pipfile.lock", "pyproject.toml", "poetry.lock"])
def test_dependency_file_nested_too_deeply_is_a_note(
    own: LiveNode, dev_key: str, name: str
) -> None:
    """A lock file or pyproject.toml nested 5,000 deep crashed the scan (a RecursionError
    no one caught; the deploy refused as "stopped unexpectedly"). It is an unreadable
    dependency file like any other: noted in the report, and the deploy is judged on the
    rest."""
    nested = "[" * 5000 + "]" * 5000
    text = (
        '{"default": ' + nested + "}"
        if name.endswith(".lock") and "Pip" in name
        else (
            f"[project]\nname = 'x'\ndependencies = {nested}\n"
            if name == "pyproject.toml"
            else f"x = {nested}\n"
        )
    )
    main = b"def handler(event, context):\n    return {'ok': True}\n"
    r = _deploy(own, dev_key, {"main.py": main, name: text.encode()})
    assert r.status_code in (200, 201), r.text
    assert f"{name}: could not be read" in r.json()["scan"]["report"], r.text


def test_member_name_that_is_not_utf8_is_refused_clearly(own: LiveNode, dev_key: str) -> None:
    """A member whose name is not UTF-8 (b"\\xff.py") made the deploy a 500: the bundle's
    digest (and the scan's report, when a finding named it) wrote it as UTF-8. It is now
    refused at unpack (422, as a member with an unsafe path is), naming the member."""
    main = b"def handler(event, context):\n    return {'ok': True}\n"
    name = b"\xff.py".decode("utf-8", "surrogateescape")
    r = _deploy(own, dev_key, {"main.py": main, name: main})
    assert r.status_code == 422, r.text
    assert "UTF-8" in r.json()["detail"], r.text


@pytest.mark.parametrize("where", ["", ".deps/"], ids=["at-the-root", "in-deps"])
def test_vulnerable_distribution_whose_metadata_holds_a_nul_byte_is_blocked(
    own: LiveNode, dev_key: str, where: str
) -> None:
    """A vendored requests 2.19.0 (in .deps/ or installed at the bundle's root) whose
    METADATA has a NUL byte in its description: the scan dropped the file as binary,
    without a word, though its headers come first (the SBOM, and so the advisory watch,
    read them), and the vulnerable version deployed. The deploy is blocked. (A METADATA
    padded past the 2 MiB the scan reads of a file is refused by the vendoring check.)"""
    meta = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\n\n\0binary\n"
    files = {
        "main.py": b"def handler(event, context):\n    return {'ok': True}\n",
        f"{where}requests/__init__.py": b"__version__ = '2.19.0'\n",
        f"{where}requests-2.19.0.dist-info/METADATA": meta,
    }
    r = _deploy(own, dev_key, files)
    assert r.status_code == 422, r.text
    assert any(p.startswith("DJ-DEP-001") for p in r.json()["problems"]), r.text


@pytest.mark.parametrize(
    "imports",
    [
        b"VERSION = 1; import telnetlib\n",
        b"if True: import telnetlib\n",
        b"import os, \\\n    telnetlib\n",
    ],
    ids=["after-a-semicolon", "in-a-one-line-if", "on-a-continuation-line"],
)
def test_import_bandit_reads_but_the_prefilter_missed_is_blocked(
    own: LiveNode, dev_key: str, imports: bytes
) -> None:
    """A module goes to Bandit only if its text meets a check's precondition; the
    precondition wanted the import at the start of a line, so `x = 1; import telnetlib`
    (Python and Bandit read it) kept the module from Bandit and its cleartext Telnet
    session (B312) deployed. The deploy is blocked."""
    main = imports + b"\n\ndef handler(event, context):\n"
    main += b"    return str(telnetlib.Telnet(event['host'], timeout=1))\n"
    r = _deploy(own, dev_key, {"main.py": main})
    assert r.status_code == 422, r.text
    assert any(p.startswith("DJ-PY-106") for p in r.json()["problems"]), r.text


def _slow_to_scan() -> dict[str, bytes]:
    """About 1.5 MiB of plain Python: a 25 kB archive, some 10 s of the node's one scanner
    (every scan takes its turn at it)."""
    line = b"v = os.chmod  # padding\n"
    body = b"import os\n" + line * ((1536 << 10) // len(line))
    main = b"def handler(event, context):\n    return {'ok': True}\n"
    return {"main.py": main, "slow.py": body}


@pytest.mark.slow  # slow scans, one at a time
def test_one_developers_slow_scans_do_not_keep_other_deploys_out(
    own: LiveNode, dev_key: str
) -> None:
    """One developer sends ten deploys at once, each slow to scan: the node's ten deploy
    places were all theirs (the per-caller share bounded only archives being received),
    so another tenant's deploy was refused with 503 until the scans had run one by one.
    Now one caller's deploys at work or waiting are at most the queue's slots: the others
    are refused, and the other tenant's deploy is taken and done."""
    other: str = own.create_key("scanner-failopen-other", "developer")["key"]
    clean = b"def handler(event, context):\n    return {'ok': True}\n"
    slow = _slow_to_scan()
    with ThreadPoolExecutor(10) as pool:
        hostile = [pool.submit(_deploy, own, dev_key, slow) for _ in range(10)]
        time.sleep(3)  # the ten archives are received and waiting for the scanner
        started = time.monotonic()
        theirs = _deploy_named(own, other, "other-tenant", clean)
        waited = time.monotonic() - started
        statuses = sorted(f.result().status_code for f in hostile)
    print(
        f"hostile deploys: {statuses}; the other tenant's: {theirs.status_code} after {waited:.0f}s"
    )
    assert theirs.status_code == 201, theirs.text
    assert statuses.count(503) >= 7, statuses


def test_requirement_included_through_a_parent_directory_is_read(
    own: LiveNode, dev_key: str
) -> None:
    """`deploy/requirements.txt` including `-r ../common/pins.txt` (pip resolves it against
    the including file's directory): the scan looked up "deploy/../common/pins.txt", said
    it was not found, and the vulnerable pin in it passed. The deploy is blocked."""
    files = {
        "main.py": b"def handler(event, context):\n    return {'ok': True}\n",
        "deploy/requirements.txt": b"-r ../common/pins.txt\n",
        "common/pins.txt": b"requests==2.19.0\n",
    }
    r = _deploy(own, dev_key, files)
    assert r.status_code == 422, r.text
    assert any(p.startswith("DJ-DEP-001") for p in r.json()["problems"]), r.text


def test_record_with_a_field_past_the_csv_limit_is_refused_clearly(
    own: LiveNode, dev_key: str
) -> None:
    """A vendored distribution whose RECORD holds a 200,000-character field (past the csv
    module's field limit): csv.Error reached no handler while the node read the bundle's
    distributions. The deploy is refused as a bad bundle (422), naming the RECORD."""
    meta = b"Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n\n"
    files = {
        "main.py": b"def handler(event, context):\n    return {'ok': True}\n",
        ".deps/tiny/__init__.py": b"",
        ".deps/tiny-1.0.dist-info/METADATA": meta,
        ".deps/tiny-1.0.dist-info/RECORD": b"tiny/__init__.py,," + b"x" * 200_000 + b"\n",
    }
    r = _deploy(own, dev_key, files)
    assert r.status_code == 422, r.text
    assert "RECORD" in r.json()["detail"], r.text


def test_scan_cannot_write_lines_into_the_nodes_log(own: LiveNode, dev_key: str) -> None:
    """A member named with newlines and a JSON record, in a module Bandit gives up on:
    Bandit logged the file's path, and the scan process's stderr was the node's, so the
    forged record stood as a line of its own in the node's log. Nothing the scan process
    prints reaches the node's log now."""
    forged = '{"event": "FORGED-BY-A-BUNDLE", "level": "INFO", "logger": "donjon"}'
    name = f"x\n{forged}\n.py"
    module = b"import os\n\nPAD = " + b"lambda: " * 2000 + b"1\n\n\n"
    module += b"def run(event, context):\n    os.chmod('/tmp/shared', 0o777)\n"
    main = b"def handler(event, context):\n    return {'ok': True}\n"
    r = _deploy(own, dev_key, {"main.py": main, name: module})
    assert r.status_code == 400, r.text
    log = (own.data_dir / "serve.log").read_text()
    assert forged not in log.splitlines(), "a bundle wrote a line of the node's log"


def test_credential_written_with_a_surrogate_escape_is_blocked(own: LiveNode, dev_key: str) -> None:
    """A hard-coded password whose literal holds a lone surrogate escape (``\\ud800``):
    hashing the value for its fingerprint raised UnicodeEncodeError and the scan process
    crashed (refused as "stopped unexpectedly", naming nothing). The finding blocks the
    deploy."""
    main = b'PASSWORD = "k9Jx2mQ8\\ud800vLp4Rz7WbN3c"\n\n\n'
    main += b"def handler(event, context):\n    return {'ok': True}\n"
    r = _deploy(own, dev_key, {"main.py": main})
    assert r.status_code == 422, r.text
    assert any(p.startswith("DJ-SEC-003") for p in r.json()["problems"]), r.text
