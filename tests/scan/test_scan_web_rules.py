"""Issue 9's web rules: grading by file and endpoint, secrets' paths, gate levels."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from donjon.scan import Confidence, Finding, ScanPolicy, Severity, scan_path
from donjon.scan.python.leaks import credential_name
from donjon.scan.python.misuse import in_test_code


def _scan(root: Path, rel: str, code: str) -> list[Finding]:
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(textwrap.dedent(code))
    return list(scan_path(root).findings)


@pytest.mark.parametrize(
    ("rel", "test"),
    [
        ("tests/unit/client.py", True),
        ("test/helpers.py", True),
        ("pkg/test_client.py", True),
        ("pkg/client_test.py", True),
        ("conftest.py", True),
        ("pkg/client.py", False),
        ("pkg/testing_tools.py", False),
        ("contests/app.py", False),
    ],
)
def test_test_code_is_recognised_by_path(rel: str, test: bool) -> None:
    """tests/ and test/ directories, test_*.py, *_test.py and conftest.py are test code."""
    assert in_test_code(rel) is test


@pytest.mark.parametrize("rel", ["tests/test_emulator.py", "conftest.py", "app/client_test.py"])
def test_tls_off_in_test_code_does_not_block(tmp_path: Path, rel: str) -> None:
    """verify=False in a test file is reported at low confidence, below the gate."""
    code = """
        import requests

        def check():
            return requests.get("https://dev.local/health", verify=False, timeout=5)
    """
    [finding] = [f for f in _scan(tmp_path, rel, code) if f.rule_id == "DJ-PY-006"]
    assert finding.confidence is Confidence.LOW
    assert "test code" in finding.message
    assert not scan_path(tmp_path).blocking(ScanPolicy())


def test_tls_off_in_real_code_blocks(tmp_path: Path) -> None:
    """The same call in application code stays at gate level."""
    code = """
        import requests

        def check():
            return requests.get("https://dev.local/health", verify=False, timeout=5)
    """
    [finding] = [f for f in _scan(tmp_path, "app/client.py", code) if f.rule_id == "DJ-PY-006"]
    assert finding.confidence is Confidence.HIGH
    assert scan_path(tmp_path).blocking(ScanPolicy())


def test_secret_returned_blocks_and_logged_does_not(tmp_path: Path) -> None:
    """A returned secret is gate level (high, high); a logged one is medium severity."""
    code = """
        import logging
        import os

        def handler(event, context):
            key = os.environ["API_KEY"]
            logging.info("key %s", key)
            return {"statusCode": 200, "body": "key=" + key}
    """
    found = {f.rule_id: f for f in _scan(tmp_path, "main.py", code)}
    returned, logged = found["DJ-PY-015"], found["DJ-PY-016"]
    assert (returned.severity, returned.confidence) == (Severity.HIGH, Confidence.HIGH)
    assert (logged.severity, logged.confidence) == (Severity.MEDIUM, Confidence.HIGH)
    steps = [(s.location.line, s.description) for s in returned.taint_path]
    assert steps[0] == (6, "os.environ['API_KEY']: a secret from the environment")
    assert steps[-1] == (8, "returned to the caller")
    assert {f.rule_id for f in scan_path(tmp_path).blocking(ScanPolicy())} == {"DJ-PY-015"}


def test_secret_through_a_helper_keeps_its_path(tmp_path: Path) -> None:
    """A secret returned by the module's own helper is followed into the handler."""
    code = """
        import os

        def _settings():
            return {"db": os.environ.get("DATABASE_PASSWORD"), "region": "eu"}

        def handler(event, context):
            return _settings()
    """
    [finding] = [f for f in _scan(tmp_path, "main.py", code) if f.rule_id == "DJ-PY-015"]
    assert finding.taint_path[0].location.line == 5
    assert "returned by _settings()" in [s.description for s in finding.taint_path]


@pytest.mark.parametrize(
    ("name", "credential"),
    [
        ("DB_PASSWORD", True),
        ("API_KEY", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("GITHUB_TOKEN", True),
        ("SECRET_ARN", False),
        ("SECRET_NAME", False),
        ("TOKEN_TABLE", False),
        ("AUTHOR", False),
        ("COGNITO_AUTH_DOMAIN", False),
        ("AUTH_TOKEN", True),
        ("BASIC_AUTH_PASSWORD", True),
        ("AWS_REGION", False),
    ],
)
def test_credential_names(name: str, credential: bool) -> None:
    """Environment names holding a credential, not a reference to one."""
    assert credential_name(name) is credential
