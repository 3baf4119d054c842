"""Hard-coded secrets: detection, masking in every output, and baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from donjon.scan import (
    Baseline,
    FindingKind,
    ScanError,
    render_json,
    render_sarif,
    render_text,
    scan_path,
    write_baseline,
)
from donjon.scan.scanners.secret_values import Verdict, classify, not_a_secret
from donjon.scan.scanners.secrets import secret_fingerprint

# Made up for these tests: the right shapes, random values.
TOKEN = "ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d"
PASSWORD = "Tr0ub4dor&3-horse"


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "settings.py").write_text(f'GITHUB_TOKEN = "{TOKEN}"\nDB_PASSWORD = "{PASSWORD}"\n')
    (root / "donjon.yaml").write_text(
        "name: s\nhandler: settings.handler\nmemory_mb: 64\ntimeout_s: 3\n"
    )
    return root


def test_tokens_and_passwords_are_found(tmp_path: Path) -> None:
    """A GitHub token (format rule) and a password (keyword rule), each once."""
    report = scan_path(_project(tmp_path / "p"))
    assert [(f.rule_id, f.location.line) for f in report.findings] == [
        ("DJ-SEC-001", 1),
        ("DJ-SEC-003", 2),
    ]
    assert all(f.kind is FindingKind.SECRET for f in report.findings)
    assert report.findings[0].fingerprint == secret_fingerprint(TOKEN)


def test_no_output_format_contains_the_secret(tmp_path: Path) -> None:
    """Reports end up in deploy logs: values are masked in messages and snippets."""
    report = scan_path(_project(tmp_path / "p"))
    for rendered in (render_text(report), render_json(report), render_sarif(report)):
        assert TOKEN not in rendered
        assert PASSWORD not in rendered
        assert TOKEN[4:12] not in rendered
    assert "ghp_********" in render_text(report)


def test_a_baseline_accepts_reviewed_findings_even_after_lines_move(tmp_path: Path) -> None:
    """Write a baseline, shift the code down: the findings stay accepted."""
    project = _project(tmp_path / "p")
    baseline = tmp_path / "baseline.json"
    assert write_baseline(scan_path(project).findings, baseline) == 2
    settings = project / "settings.py"
    settings.write_text("# moved\n\n" + settings.read_text())
    report = scan_path(project, baseline=baseline)
    assert report.findings == ()
    assert len(report.suppressed) == 2
    assert report.blocking() == ()


def test_a_changed_secret_is_not_accepted_by_the_old_baseline(tmp_path: Path) -> None:
    """The baseline accepts the reviewed value, not whatever sits on that line later."""
    project = _project(tmp_path / "p")
    baseline = tmp_path / "baseline.json"
    write_baseline(scan_path(project).findings, baseline)
    settings = project / "settings.py"
    settings.write_text(settings.read_text().replace("8oOOL8d", "8oOOL9x"))
    report = scan_path(project, baseline=baseline)
    assert [f.rule_id for f in report.findings] == ["DJ-SEC-001"]


def test_detect_secrets_baselines_are_accepted(tmp_path: Path) -> None:
    """A .secrets.baseline from detect-secrets suppresses the same secrets."""
    project = _project(tmp_path / "p")
    ds = {
        "version": "1.5.0",
        "plugins_used": [],
        "filters_used": [],
        "results": {
            "settings.py": [
                {
                    "type": "GitHub Token",
                    "filename": "settings.py",
                    "hashed_secret": secret_fingerprint(TOKEN),
                    "is_verified": False,
                    "line_number": 1,
                }
            ]
        },
    }
    baseline = tmp_path / ".secrets.baseline"
    baseline.write_text(json.dumps(ds))
    report = scan_path(project, baseline=baseline)
    assert [f.rule_id for f in report.findings] == ["DJ-SEC-003"]
    assert [f.rule_id for f in report.suppressed] == ["DJ-SEC-001"]


def test_inline_comments_do_not_suppress(tmp_path: Path) -> None:
    """Only the reviewed baseline suppresses: not nosec, not detect-secrets pragmas."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "x.py").write_text(f'TOKEN = "{TOKEN}"  # pragma: allowlist secret  # nosec\n')
    assert [f.rule_id for f in scan_path(root).findings] == ["DJ-SEC-001"]


@pytest.mark.parametrize(
    "content",
    ["not json", '{"something": "else"}', '{"donjon_baseline": 1, "findings": [{"rule_id": 1}]}'],
)
def test_bad_baselines_are_scan_errors(tmp_path: Path, content: str) -> None:
    """A baseline that cannot be understood stops the scan instead of accepting nothing."""
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(ScanError):
        Baseline.load(path)
    with pytest.raises(ScanError, match="cannot read baseline"):
        Baseline.load(tmp_path / "missing.json")


# --- What counts as a secret (issue 9): values, token boundaries, context, call sites. ---


def _scan_files(root: Path, files: dict[str, str]) -> list[tuple[str, int, str, str]]:
    """Scan a project made of `files`: (path, line, rule, confidence) of each finding."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    report = scan_path(root)
    return [
        (f.location.path, f.location.line, f.rule_id, f.confidence.label) for f in report.findings
    ]


@pytest.mark.parametrize(
    "value",
    [
        "true",
        "False",
        "None",
        "null",
        "nil",
        "undefined",
        "12345",
        "string",
        "Optional[str]",
        "str | None",
        "process.env.DD_API_KEY",
        "${DB_PASSWORD}",
        "{{resolve:secretsmanager:prod/db:SecretString:password}}",
        "!Ref DbSecret",
        "ssm:/prod/db/password",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbC123",
        "cognito-idp:AdminSetUserPassword",
        "s3:GetObject",
        "GetSecretValue",
        "x-api-key",
        "prod/orders/db-password",
        "your-api-key-here",
    ],
)
def test_values_that_are_not_secrets(value: str) -> None:
    """Flags, nulls, numbers, types, references, ARNs, IAM actions and names are no secret."""
    assert not_a_secret(value), value


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        ("k9Jx2mQ8vLp4Rz7WbN3c", Verdict.LIKELY),
        ("Tr0ub4dor&3-horse", Verdict.LIKELY),
        ("Correct-Horse-7", Verdict.LIKELY),
        ("hunter2", Verdict.WEAK),
        ("abab1212", Verdict.WEAK),
    ],
)
def test_values_that_may_be_secrets_are_graded_by_how_random_they_look(
    value: str, verdict: Verdict
) -> None:
    """Long, mixed and not repetitive: likely; short or plain: weak (reported low)."""
    assert classify(value) is verdict


@pytest.mark.parametrize(
    ("rel", "text"),
    [
        ("policies.json", '{"AdminSetUserPassword": "cognito-idp:AdminSetUserPassword"}\n'),
        ("cdk.json", '{"context": {"@aws-cdk/core:checkSecretUsage": true}}\n'),
        ("template.yaml", "Client:\n  GenerateSecret: false\n  apiKey: null\n"),
        ("client.ts", "const o = { apiKey: process.env.DD_API_KEY };\nlet password: string;\n"),
        ("settings.py", "class S:\n    secret: Optional[str] = None\n    password: str = 'None'\n"),
        (
            "kinesis.py",
            'ID = "shardId-000000000006:49590338271490256608559692538361571095921575"\n',
        ),
    ],
)
def test_real_project_false_alarms_are_gone(tmp_path: Path, rel: str, text: str) -> None:
    """Each shape the issue quotes from real projects yields no finding at all."""
    assert _scan_files(tmp_path / "p", {rel: text}) == []


def test_a_telegram_token_is_found_alone_or_in_its_api_url(tmp_path: Path) -> None:
    """The bot-token shape counts only as a whole token (or after /bot in the API URL)."""
    token = "7104559241:AAGx3kQp9ZLm2VwR8tYb1NcXs5Dj0HfUe4o"
    text = (
        f'TOKEN = "{token}"\n'
        f'URL = "https://api.telegram.org/bot{token}/getMe"\n'
        f'NOT_ONE = "x{token}"\n'
        f'LONGER = "{token}Zz"\n'
    )
    found = _scan_files(tmp_path / "p", {"bot.py": text})
    assert [(line, rule) for _, line, rule, _ in found] == [(1, "DJ-SEC-001"), (2, "DJ-SEC-001")]


@pytest.mark.parametrize(
    "rel",
    [
        "tests/unit/helpers.py",
        "test_api.py",
        "api_test.py",
        "conftest.py",
        "fixtures/config.yaml",
        "events/sign_up.json",
        "examples/deploy.py",
    ],
)
def test_tests_fixtures_and_sample_events_are_graded_below_the_gate(
    tmp_path: Path, rel: str
) -> None:
    """The same literal password: medium in code, low (still reported) in a test or sample."""
    line = (
        'db_password: "Tr0ub4dor&3-horse"\n'
        if rel.endswith((".yaml", ".json"))
        else ('DB_PASSWORD = "Tr0ub4dor&3-horse"\n')
    )
    code = 'DB_PASSWORD = "Tr0ub4dor&3-horse"\n'
    found = _scan_files(tmp_path / "p", {rel: line, "app/db.py": code, "app/events/db.py": code})
    assert sorted(found) == sorted(
        [
            (rel, 1, "DJ-SEC-003", "low"),
            ("app/db.py", 1, "DJ-SEC-003", "medium"),
            ("app/events/db.py", 1, "DJ-SEC-003", "medium"),  # an events package is code
        ]
    )


def test_literal_signing_keys_block_the_gate_whatever_they_look_like(tmp_path: Path) -> None:
    """jwt.encode/decode, hmac.new and module constants: DJ-SEC-006 at high confidence."""
    code = (
        "import hmac, hashlib, jwt\n"
        'KEY = "k"\n'
        'def a(p): return jwt.encode(p, "s3cr3t-jwt")\n'
        "def b(t): return jwt.decode(t, KEY, algorithms=['HS256'])\n"
        'def c(m): return hmac.new(b"\\x01\\x02raw", m, hashlib.sha256)\n'
        "def d(p, ctx): return jwt.encode(p, ctx.secrets['jwt'])\n"
    )
    root = tmp_path / "p"
    found = _scan_files(root, {"auth.py": code})
    assert found == [
        ("auth.py", 3, "DJ-SEC-006", "high"),
        ("auth.py", 4, "DJ-SEC-006", "high"),
        ("auth.py", 5, "DJ-SEC-006", "high"),
    ]
    report = scan_path(root)
    assert len(report.blocking()) == 3
    rendered = render_json(report) + render_text(report)
    assert "s3cr3t-jwt" not in rendered
    assert "\\x01\\x02raw" not in rendered


def test_credential_arguments_are_found_at_gate_level_even_when_short(tmp_path: Path) -> None:
    """A literal passed to api_key=/auth_token= of a call is a credential: medium, blocking."""
    code = (
        "import boto3\n"
        'c = Client(api_key="Zq81x")\n'
        'd = connect(auth_token="tK4-77pq", NextToken="abc123", password=None)\n'
        'e = boto3.client("s3", aws_secret_access_key="Fz9/qL2+kW7pX3mR8vT1nB6")\n'
    )
    root = tmp_path / "p"
    found = _scan_files(root, {"clients.py": code})
    assert found == [
        ("clients.py", 2, "DJ-SEC-003", "medium"),
        ("clients.py", 3, "DJ-SEC-003", "medium"),
        ("clients.py", 4, "DJ-SEC-003", "medium"),
    ]
    assert len(scan_path(root).blocking()) == 3


def test_examples_in_docstrings_and_comments_are_graded_below_the_gate(tmp_path: Path) -> None:
    """A password in a docstring example or a comment is reported at low confidence."""
    code = (
        'def f():\n    """Example: {"password": "Yx7#kQ2!mW9zP"}"""\n'
        '# DB_PASSWORD = "Tr0ub4dor&3-horse"\n'
    )
    found = _scan_files(tmp_path / "p", {"m.py": code})
    assert found == [("m.py", 2, "DJ-SEC-003", "low"), ("m.py", 3, "DJ-SEC-003", "low")]


def test_a_secret_written_in_pieces_is_found_once_and_prose_is_not(tmp_path: Path) -> None:
    """Literals joined into one string (implicit concatenation over lines, `+`, escapes)
    are read whole: a token in them is found once, at its first line; wrapped prose, URL
    pieces and a token a line holds whole add nothing."""
    escaped = "".join(f"\\x{ord(c):02x}" for c in TOKEN)
    (tmp_path / "settings.py").write_text(
        f'WRAPPED = (\n    "{TOKEN[:20]}"\n    "{TOKEN[20:]}"\n)\n'
        f'PLUS = "{TOKEN[:10]}" + "{TOKEN[10:]}"\n'
        f'ESCAPED = "{escaped}"\n'
        f'WHOLE = ("{TOKEN}"\n    "-suffix")\n'
        'MESSAGE = ("The quick brown fox jumps over "\n    "the lazy dog again and again")\n'
        'URL = "https://example.com/" + "path/to/thing"\n'
    )
    report = scan_path(tmp_path)
    assert [(f.rule_id, f.location.line) for f in report.findings] == [
        ("DJ-SEC-001", 2),
        ("DJ-SEC-001", 5),
        ("DJ-SEC-001", 6),
        ("DJ-SEC-001", 7),
    ]
    assert all(TOKEN not in f.snippet and TOKEN not in f.message for f in report.findings)


def test_a_manifests_secret_names_are_names_not_values(tmp_path: Path) -> None:
    """A trigger's `secret:` and a grant in donjon.yaml name vault secrets by contract;
    a name with a digit in it (`s3p-token`, `gh2-hook`) was taken for a hard-coded
    password, block or flow style, and the deploy gate refused a correct manifest. The
    same value as a password anywhere else (in code, under another key) still is one."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "handler.py").write_text(
        'def main(event, context):\n    return {}\n\nDB_PASSWORD = "gh2-hook"\n'
    )
    (root / "donjon.yaml").write_text(
        "name: s3p\nhandler: handler.main\nmemory_mb: 64\ntimeout_s: 3\n"
        "permissions:\n  secrets: [db-pass2]\n"
        "triggers:\n"
        "  - s3: {source: push, path: /s3p, secret: s3p-token}\n"
        "  - webhook:\n      path: /gh\n      secret: gh2-hook\n"
        "  - webhook: {path: /gh3, secret: 'gh3-hook'}\n"
        "settings:\n  api_password: Tr0ub4dor-3x\n  db_password: s3p-token\n"
    )
    report = scan_path(root)
    secrets = [f for f in report.findings if f.kind is FindingKind.SECRET]
    found = sorted((f.location.path, f.location.line) for f in secrets)
    assert found == [("donjon.yaml", 14), ("donjon.yaml", 15), ("handler.py", 4)], found
