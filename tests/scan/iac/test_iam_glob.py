"""IAM wildcards without backtracking: what matches, what a Deny surely covers, and
templates built to make a regular expression backtrack (a review found a 70-byte
policy that held the scan past the deploy gate's limit)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from donjon.scan.iac.iam.glob import glob_covers, glob_match
from donjon.scan.iac.iam.rules import function_findings
from donjon.scan.iac.model import Cloud, Effect, Function, Policy, Statement, Where


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("*", "", True),
        ("*", "anything", True),
        ("iam:pass*", "iam:passrole", True),
        ("i?m:*", "iam:passrole", True),
        ("*object*", "getobjectacl", True),
        ("*object*", "getbucket", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "aXbY", False),
        ("*?*?*?*?*#", "x" * 60, False),
        ("*?*?*?*?*#", "x" * 60 + "#", True),
    ],
)
def test_glob_matches_as_iam_does(pattern: str, text: str, matches: bool) -> None:
    """``*`` is any run, ``?`` one character, everything else literal."""
    assert glob_match(pattern, text) is matches


@pytest.mark.parametrize(
    ("deny", "allow", "covered"),
    [
        ("*", "*", True),
        ("?", "*", False),  # a one-character ARN: covers nothing an Allow of * grants
        ("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/*", True),
        ("arn:aws:s3:::b/*", "arn:aws:s3:::*", False),
        ("arn:aws:s3:::b/?", "arn:aws:s3:::b/*", False),
        ("arn:aws:s3:::b/?", "arn:aws:s3:::b/x", True),
    ],
)
def test_a_deny_covers_only_what_it_surely_covers(deny: str, allow: str, covered: bool) -> None:
    """A wildcard Allow is covered by a Deny of ``*`` or of a literal prefix and ``*``."""
    assert glob_covers(deny, allow) is covered


def test_a_deny_on_a_question_mark_does_not_hide_admin_access() -> None:
    """Allow * on * with Deny * on "?" is still admin access (the review's template)."""
    allow = Statement(Effect.ALLOW, 5, actions=("*",), resources=("*",))
    deny = Statement(Effect.DENY, 9, actions=("*",), resources=("?",))
    function = Function(
        Where("template.yaml", 3, "Fn"), Cloud.AWS, policies=(Policy("p", 4, (allow, deny)),)
    )
    assert "DJ-IAC-001" in {f.rule_id for f in function_findings(function)}


TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      Policies:
        - Statement:
            - Effect: Allow
              Action: "{action}"
              Resource: "*"
            - Effect: Deny
              Action: "s3:*"
              Resource: "{resource}"
Transform: AWS::Serverless-2016-10-31
"""


@pytest.mark.slow
def test_backtracking_patterns_do_not_stall_the_scan(tmp_path: Path) -> None:
    """Wildcard runs that make a regular expression backtrack exponentially are scanned
    to the end (in a child with a generous bound, so a regression fails, not hangs)."""
    (tmp_path / "template.yaml").write_text(
        TEMPLATE.format(action="*:" + "*?" * 12 + "*#", resource="*?" * 12 + "#")
    )
    probe = (
        "from pathlib import Path; from donjon.scan import scan_path; "
        f"r = scan_path(Path({str(tmp_path)!r})); "
        "print(sorted({f.rule_id for f in r.findings}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.startswith("["), out.stderr
