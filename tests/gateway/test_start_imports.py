"""What the node's own process imports to serve: the libraries of features it may never
use (a postgres trigger's client, Redis, the SBOM and provenance libraries, the
scanners that run in the scan helper) are loaded where they are used, not at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: Each loaded by the first use of its feature: a postgres trigger (psycopg),
#: DONJON_REDIS_URL (redis), a deploy's SBOM (cyclonedx) and provenance
#: (securesystemslib, which loads boto3 when it is installed), a scan (detect_secrets,
#: bandit: in the scan helper).
LATER = ("psycopg", "redis", "cyclonedx", "securesystemslib", "boto3", "detect_secrets", "bandit")
#: Donjon's own modules of the scans: the scan package's names load their modules on
#: first use (donjon/lazy_exports.py), and the node uses its types only; SARIF's
#: renderer, with the rule catalog it describes, loads when that format is asked for.
SCANS = ("donjon.scan.engine", "donjon.scan.format.sarif", "donjon.scan.iac.catalog")


def _python(probe: str, *flags: str) -> str:
    """What `probe` prints, run by a fresh interpreter (with `flags`)."""
    return subprocess.run(
        [sys.executable, *flags, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def test_the_gateway_loads_no_library_of_a_feature_not_used_yet() -> None:
    """Importing the gateway (what `donjon serve` serves) loads none of them."""
    probe = (
        "import sys, donjon.gateway.app, donjon.cli.node\n"
        f"print(' '.join(m for m in {LATER + SCANS!r} if m in sys.modules))\n"
    )
    assert _python(probe).split() == []


def test_the_features_still_load_them_when_used() -> None:
    """The lazy imports resolve: each feature's module imports its library when asked."""
    probe = (
        "import sys\n"
        "from donjon.triggers.postgres_source import PostgresListener\n"
        "from donjon.ratelimit.redis import RedisLimiter\n"
        "from donjon.supply.cyclonedx_doc import bom_json\n"
        "from donjon.supply.dsse import sign_envelope\n"
        "from donjon.scan import scan_path\n"
        "print(' '.join(m for m in ('psycopg', 'redis', 'cyclonedx', 'securesystemslib',"
        " 'detect_secrets') if m in sys.modules))\n"
    )
    assert _python(probe).split() == [
        "psycopg",
        "redis",
        "cyclonedx",
        "securesystemslib",
        "detect_secrets",
    ]


def test_the_audit_writer_loads_no_http_client_and_no_settings_reader() -> None:
    """The audit writer process (audit/writer.py) loads httpx, and the CLI libraries httpx
    loads with it, only for a checkpoint webhook sink; it is given its settings, so it
    loads no pydantic-settings (config.py reads them); and it starts without the
    PostgreSQL dialect (audit/rawsql.py loads it for a PostgreSQL database's insert)."""
    later = ("httpx", "click", "rich", "pygments", "pydantic_settings")
    probe = (
        "import sys, donjon.audit.writer\n"
        f"print(' '.join(m for m in {(*later, 'sqlalchemy.dialects.postgresql')!r}"
        " if m in sys.modules))\n"
    )
    assert _python(probe).split() == []


def test_checking_grants_does_not_load_the_egress_proxy() -> None:
    """The manifest's model, the scan helper and the CLI check egress grants without
    loading the proxy, and with it the audit log and the database layer."""
    probe = (
        "import sys, donjon.manifest, donjon.scan.worker, donjon.scan.engine\n"
        "print(' '.join(m for m in ('donjon.egress.proxy', 'donjon.audit', 'sqlalchemy')"
        " if m in sys.modules))\n"
    )
    assert _python(probe, "-I").split() == []
    from donjon.egress import EgressProxy  # still there for the node that serves it

    assert EgressProxy.__module__ == "donjon.egress.proxy"


def test_init_and_the_scan_helper_load_what_they_use() -> None:
    """`donjon init` (bootstrap) loads no JWT verifier or PyJWT with the identity package's
    keys; the scan helper loads no OSV updater, nor httpx, with the scan package's
    advisories."""
    probe = (
        "import sys, donjon.cli.node, donjon.bootstrap\n"
        "print(' '.join(m for m in ('jwt', 'donjon.identity.jwt_verifier') if m in sys.modules))\n"
    )
    assert _python(probe).split() == []
    probe = (
        "import sys, donjon.scan.worker\n"
        "print(' '.join(m for m in ('httpx', 'donjon.scan.deps.osv_update') if m in sys.modules))\n"
    )
    assert _python(probe, "-I").split() == []


def test_the_scan_helper_runs_once_as_main() -> None:
    """`python -m donjon.scan.worker` is not imported by its own package first (runpy would
    run the module twice, and warns so): with that warning an error, it starts and says
    it is ready."""
    done = subprocess.run(
        [sys.executable, "-I", "-W", "error::RuntimeWarning", "-m", "donjon.scan.worker"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"outcome": "ready"' in done.stdout


def test_the_names_loaded_on_first_use_are_still_checked_by_mypy(tmp_path: Path) -> None:
    """A package's module `__getattr__` (PEP 562) makes mypy take any name of it as Any:
    a misspelt import of donjon.scan, donjon.scan.deps, donjon.identity or donjon.egress
    would pass the type check and fail at run time. Their lazy names are typed by their
    TYPE_CHECKING imports; a name that does not exist is an error."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from donjon.egress import EgressProxy, NoSuchProxy\n"
        "from donjon.scan import NoSuchScan, scan_path\n"
        "from donjon.scan.deps import AdvisoryDB, NoSuchDep\n"
        "from donjon.identity import JwtVerifier, NoSuchIdentity\n"
        "reveal_type(EgressProxy)\n"
        "reveal_type(scan_path)\n"
        "reveal_type(AdvisoryDB)\n"
        "reveal_type(JwtVerifier)\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            "--follow-imports",
            "silent",
            str(probe),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    out = done.stdout
    assert 'Module "donjon.egress" has no attribute "NoSuchProxy"' in out, out
    assert 'Module "donjon.scan" has no attribute "NoSuchScan"' in out, out
    assert 'Module "donjon.scan.deps" has no attribute "NoSuchDep"' in out, out
    assert "donjon.scan.deps.advisories.AdvisoryDB" in out, out
    assert 'Module "donjon.identity" has no attribute "NoSuchIdentity"' in out, out
    assert "donjon.identity.jwt_verifier.JwtVerifier" in out, out
    assert "donjon.egress.proxy.EgressProxy" in out, out
    assert "def (path: pathlib.Path" in out, out
