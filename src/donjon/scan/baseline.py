"""Baselines: findings a reviewer has accepted, so they stop failing the gate.

A finding is accepted by (rule id, path, fingerprint); fingerprints ignore line
numbers, so code moving does not resurrect it, but changing the flagged line does.
A detect-secrets baseline (``.secrets.baseline``) is accepted too: its hashed secrets
match Donjon's secret fingerprints. Inline comments (``# nosec``, ``pragma: allowlist``)
never suppress anything: the baseline is reviewed, a comment in the bundle is not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from donjon.scan.errors import ScanError
from donjon.scan.model import Finding, FindingKind

__all__ = ["BASELINE_VERSION", "Baseline", "write_baseline"]

BASELINE_VERSION = 1


@dataclass(frozen=True)
class Baseline:
    """Accepted findings."""

    entries: frozenset[tuple[str, str, str]] = frozenset()  # (rule id, path, fingerprint)
    secret_hashes: frozenset[tuple[str, str]] = frozenset()  # (path, sha1) from detect-secrets

    def accepts(self, finding: Finding) -> bool:
        path = finding.location.path
        if (finding.rule_id, path, finding.fingerprint) in self.entries:
            return True
        return finding.kind is FindingKind.SECRET and (path, finding.fingerprint) in (
            self.secret_hashes
        )

    def split(self, findings: Iterable[Finding]) -> tuple[list[Finding], list[Finding]]:
        """(still reported, accepted)."""
        kept: list[Finding] = []
        accepted: list[Finding] = []
        for f in findings:
            (accepted if self.accepts(f) else kept).append(f)
        return kept, accepted

    @classmethod
    def load(cls, path: Path) -> Baseline:
        """Read a Donjon or detect-secrets baseline; `ScanError` if it is neither."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ScanError(
                f"cannot read baseline {path}: {e.strerror}",
                hint="create one with `donjon scan PATH --write-baseline FILE`",
            ) from e
        except ValueError as e:
            raise ScanError(f"baseline {path} is not JSON: {e}") from e
        if isinstance(data, dict) and data.get("donjon_baseline") == BASELINE_VERSION:
            try:
                return cls(
                    entries=frozenset(
                        (str(e["rule_id"]), str(e["path"]), str(e["fingerprint"]))
                        for e in data.get("findings", [])
                    )
                )
            except (KeyError, TypeError) as e:
                raise ScanError(f"baseline {path} has a malformed entry ({e})") from e
        if isinstance(data, dict) and isinstance(data.get("results"), dict):
            hashes = frozenset(
                (str(file), str(item["hashed_secret"]))
                for file, items in data["results"].items()
                for item in items
                if isinstance(item, dict) and "hashed_secret" in item
            )
            return cls(secret_hashes=hashes)
        raise ScanError(
            f"{path} is neither a Donjon nor a detect-secrets baseline",
            hint="create one with `donjon scan PATH --write-baseline FILE`",
        )


def write_baseline(findings: Iterable[Finding], path: Path) -> int:
    """Write `findings` as a baseline accepting all of them; return how many."""
    items = sorted(
        {(f.rule_id, f.location.path, f.fingerprint): f for f in findings}.values(),
        key=lambda f: f.sort_key,
    )
    doc = {
        "donjon_baseline": BASELINE_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "findings": [
            {
                "rule_id": f.rule_id,
                "path": f.location.path,
                "fingerprint": f.fingerprint,
                "line": f.location.line,
                "message": f.message,
            }
            for f in items
        ],
    }
    try:
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise ScanError(f"cannot write baseline {path}: {e.strerror}") from e
    return len(items)
