"""The secret scanner's speed gates change no finding (they only skip detectors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.scan.project import discover
from donjon.scan.scanners import secret_detect, secrets
from donjon.scan.scanners.secrets_prefilter import for_line, for_text

# Made up for this test: the right shapes, random values, one detector family per line.
LINES = [
    'GITHUB = "ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d"',
    'slack = "xoxb-2194851231-9873245123-hWcF4bQkdpLm0Rz8YtNaVuGs"',
    'stripe_key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"',
    'db_password = "Tr0ub4dor&3-horse"',
    'PA\u017f\u017fWORD = "x7Kq9mZp2Lw4Rt8V"',  # the long s: case-folded to "s" by the regex engine
    'contraseña = "Vq8rLk2pX9mWz4Tn"',
    'sl_api_key = "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f1a3c5e7b9d1f"',
    'ibm_cloud_iam_key = "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LzXcVbNmQwE"',
    'url = "https://user:Hunter2Secret@db.example.org/x"',
    'entropy = "bm90LWEtc2VjcmV0LWJ1dC1yYW5kb20tZW5vdWdoLTk4NzY1NDMyMQ=="',
    "-----BEGIN RSA PRIVATE KEY-----",
    "nothing here but an ordinary_identifier_of_some_length = compute()",
]


def _findings(root: Path) -> list[tuple[str, int, int, str, str]]:
    project = discover(root)
    out = secrets.SecretScanner().scan(project).findings
    return sorted(
        (f.location.path, f.location.line, f.location.column, f.rule_id, f.message) for f in out
    )


@pytest.mark.parametrize("name", ["config.py", "settings.yaml", "notes.txt"])
def test_the_gates_find_what_every_detector_on_every_line_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Each line alone and all lines together: the same findings with the gates and without."""
    for number, line in enumerate(LINES):
        (tmp_path / f"one{number}").mkdir()
        (tmp_path / f"one{number}" / name).write_text(line + "\n")
    (tmp_path / name).write_text("\n".join(LINES) + "\n")
    gated = _findings(tmp_path)
    monkeypatch.setattr(secrets, "for_text", lambda plugins, text: plugins)
    monkeypatch.setattr(secret_detect, "for_line", lambda plugins, line: plugins)
    assert gated == _findings(tmp_path)
    assert len(gated) >= 2 * 8


def test_the_gates_leave_detectors_out_only_when_nothing_can_match() -> None:
    """An ordinary line keeps no format detector and loses the keyword detector."""
    plugins = secret_detect.detectors()
    plain = "total = compute(items)  # nothing to see"
    assert len(for_text(plugins, plain)) < len(plugins)
    assert len(for_line(plugins, plain)) == len(plugins) - 1
    assert len(for_line(plugins, "PASSWORD = x")) == len(plugins)
    assert len(for_line(plugins, "pa\u017f\u017fword = x")) == len(plugins)
