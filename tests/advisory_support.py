"""Shared pieces of the advisory watch's tests: small OSV exports and vendored bundles."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["bundle_archive", "osv", "write_export", "write_zip"]


def osv(
    ident: str,
    package: str,
    *,
    fixed: str | None = "2.0",
    aliases: tuple[str, ...] = (),
    withdrawn: bool = False,
    severity: str = "HIGH",
) -> dict[str, Any]:
    """An OSV record: `package` affected from 0 up to `fixed` (every version if None)."""
    events: list[dict[str, str]] = [{"introduced": "0"}]
    if fixed is not None:
        events.append({"fixed": fixed})
    record: dict[str, Any] = {
        "id": ident,
        "aliases": list(aliases),
        "summary": f"{package} does something bad",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
        "database_specific": {"severity": severity},
    }
    if withdrawn:
        record["withdrawn"] = "2026-01-01T00:00:00Z"
    return record


def write_export(directory: Path, *records: dict[str, Any]) -> Path:
    """`directory` holding exactly `records` as OSV JSON files (replacing what was there)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.json"):
        old.unlink()
    for record in records:
        (directory / f"{record['id']}.json").write_text(json.dumps(record))
    return directory


def write_zip(path: Path, *records: dict[str, Any]) -> bytes:
    """An OSV export zip of `records` (one JSON member each), written to `path`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for record in records:
            archive.writestr(f"{record['id']}.json", json.dumps(record))
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def bundle_archive(name: str, vendored: dict[str, str]) -> bytes:
    """A function bundle (tar.gz) vendoring `vendored` (package -> version) under .deps/."""
    files = {
        "donjon.yaml": f"name: {name}\nhandler: main.handler\n".encode(),
        "main.py": b"def handler(event, context):\n    return 1\n",
    }
    for package, version in vendored.items():
        files[f".deps/{package}-{version}.dist-info/METADATA"] = (
            f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode()
        )
        files[f".deps/{package.replace('-', '_')}/__init__.py"] = b""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
