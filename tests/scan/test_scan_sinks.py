"""SQL through database APIs, request forgery and path traversal: what decides a finding."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from donjon.scan import Confidence, Finding, scan_path


def _scan(tmp_path: Path, code: str) -> list[Finding]:
    target = tmp_path / "main.py"
    target.write_text(textwrap.dedent(code))
    return list(scan_path(target).findings)


def _rules(tmp_path: Path, code: str) -> list[tuple[int, str, Confidence]]:
    return [(f.location.line, f.rule_id, f.confidence) for f in _scan(tmp_path, code)]


@pytest.mark.parametrize(
    ("url", "forged"),
    [
        ("x", True),
        ('"https://api.example.com/" + x', False),
        ('"https://api.example.com?q=" + x', False),
        ('"https://api.example.com#" + x', False),
        ('"https://api.example.com" + x', True),
        ('"https://" + x + ".example.com/"', True),
        ('"https://%s/api" % x', True),
        ('"https://api.example.com/%s" % x', False),
        ('"https://{}/api".format(x)', True),
        ('f"{API}/items/{x}"', False),
        ('f"http://{x}:8080/"', True),
        ('"/items/" + x', False),
        ('"/" + x', True),
        ('"//" + x', True),
    ],
)
def test_only_a_host_left_open_is_request_forgery(tmp_path: Path, url: str, forged: bool) -> None:
    """The known constant prefix decides: a complete scheme and host fixes the target."""
    found = _rules(
        tmp_path,
        f"""
        import requests

        API = "https://api.example.com"

        def handler(event, context):
            x = event["value"]
            return requests.get({url}, timeout=5)
        """,
    )
    assert found == ([(8, "DJ-PY-011", Confidence.HIGH)] if forged else [])


def test_request_forgery_path_runs_through_the_client(tmp_path: Path) -> None:
    """A session made in one statement and used in a branch keeps its kind; the path is shown."""
    [finding] = _scan(
        tmp_path,
        """
        import requests

        def handler(event, context):
            target = event["target"]
            session = requests.Session()
            if event.get("retry"):
                session = requests.Session()
            return session.post(target, json={}, timeout=5)
        """,
    )
    assert finding.rule_id == "DJ-PY-011"
    assert finding.cwe.label == "CWE-918"
    assert [s.location.line for s in finding.taint_path] == [4, 5, 9]


def test_a_method_named_get_is_a_request_only_on_a_client(tmp_path: Path) -> None:
    """A value that may be a client or a dict is not known to be a client."""
    code = """
        import requests

        def handler(event, context):
            store = requests.Session() if event.get("remote") else {}
            return store.get(event["key"])
        """
    assert _rules(tmp_path, code) == []


def test_basename_makes_a_safe_file_name_not_a_safe_command(tmp_path: Path) -> None:
    """basename confines data for paths only: the same value is still shell injection."""
    found = _rules(
        tmp_path,
        """
        import os

        def handler(event, context):
            key = os.path.basename(event["Records"][0]["s3"]["object"]["key"])
            with open("/tmp/" + key, "wb") as out:
                out.write(b"")
            os.system("convert /tmp/" + key + " /tmp/out.png")
        """,
    )
    assert found == [(8, "DJ-PY-001", Confidence.HIGH)]


def test_a_prefix_check_needs_a_normalised_path(tmp_path: Path) -> None:
    """startswith on a joined path proves nothing; on its realpath it contains the path."""
    found = _rules(
        tmp_path,
        """
        import os

        BASE = "/srv/data"

        def raw(event, context):
            path = os.path.join(BASE, event["name"])
            if path.startswith(BASE):
                return open(path).read()

        def normalised(event, context):
            path = os.path.realpath(os.path.join(BASE, event["name"]))
            if path.startswith(BASE + os.sep):
                return open(path).read()
        """,
    )
    assert found == [(9, "DJ-PY-012", Confidence.HIGH)]


def test_partiql_parameters_are_not_read_as_statements(tmp_path: Path) -> None:
    """Each Statement of a batch is judged alone; event data in Parameters is not SQL."""
    found = _rules(
        tmp_path,
        """
        import boto3

        db = boto3.client("dynamodb")

        def handler(event, context):
            db.batch_execute_statement(Statements=[
                {"Statement": "DELETE FROM T WHERE k = ?", "Parameters": [{"S": event["k"]}]},
                {"Statement": "DELETE FROM T WHERE k = '" + event["k"] + "'"},
            ])
        """,
    )
    assert found == [(7, "DJ-PY-003", Confidence.HIGH)]


def test_a_generic_query_method_needs_sql_text(tmp_path: Path) -> None:
    """.query/.run are statements only when the text starts with an SQL verb."""
    found = _rules(
        tmp_path,
        """
        def handler(event, context):
            engine.query(event["expression"])
            engine.run(event["job"])
            engine.query("  select * from t where a = '" + event["a"] + "'")
            engine.run(f"WITH x AS (SELECT '{event['a']}') SELECT * FROM x")
        """,
    )
    assert found == [(5, "DJ-PY-003", Confidence.HIGH), (6, "DJ-PY-003", Confidence.HIGH)]


def test_a_mock_patch_decorator_is_not_a_route(tmp_path: Path) -> None:
    """@mock.patch(...) on a test does not make its fixtures caller data (a PATCH route)."""
    code = """
        from unittest import mock

        @mock.patch("app.client")
        def test_writes(client, tmp_path):
            open(tmp_path / "out.txt", "w").close()
        """
    assert _rules(tmp_path, code) == []


def test_a_guard_ending_in_abort_protects_what_follows(tmp_path: Path) -> None:
    """flask.abort() never returns: a containment check ending in it guards the use."""
    code = """
        import os
        from flask import abort, request, send_file

        BASE = "/srv/files"

        @app.route("/f")
        def serve():
            path = os.path.realpath(os.path.join(BASE, request.args["f"]))
            if not path.startswith(BASE + os.sep):
                abort(404)
            return send_file(path)
        """
    assert _rules(tmp_path, code) == []


def test_a_host_allowlist_sanitizes_the_url(tmp_path: Path) -> None:
    """urlparse(url).hostname in an allowlist fixes the host; a check on the path does not."""
    found = _rules(
        tmp_path,
        """
        from urllib.parse import urlparse
        import requests

        HOSTS = {"api.example.com"}

        def handler(event, context):
            url = event["url"]
            if urlparse(url).hostname in HOSTS:
                requests.get(url, timeout=5)
            if urlparse(url).path in {"/a"}:
                requests.get(url, timeout=5)
        """,
    )
    assert found == [(12, "DJ-PY-011", Confidence.HIGH)]
