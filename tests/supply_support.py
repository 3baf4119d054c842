"""Bundle trees with vendored distributions for the supply chain tests (tests/supply/,
tests/security/test_attack_provenance.py): `.deps/` laid out as pip installs a wheel."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

__all__ = ["function_tree", "record_hash", "vendor"]


def record_hash(data: bytes) -> str:
    """A RECORD line's hash field for `data` (urlsafe base64 SHA-256, no padding)."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def vendor(
    tree: Path,
    name: str,
    version: str,
    files: dict[str, bytes],
    *,
    metadata: str = "",
    extra_record: tuple[str, ...] = (),
    site: str = ".deps",
) -> Path:
    """Install distribution `name`==`version` into `tree/<site>` (`.` for the bundle's
    root, as `pip install -t .` does) as pip would: its `files`, a dist-info with METADATA
    (plus the lines `metadata`) and a RECORD listing every file with its hash (and the raw
    lines `extra_record`). Returns the dist-info."""
    deps = tree / site
    info = deps / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n{metadata}"
    )
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    lines = []
    for rel, data in files.items():
        path = deps / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        lines.append(f"{rel},{record_hash(data)},{len(data)}")
    for member in ("METADATA", "WHEEL"):
        data = (info / member).read_bytes()
        lines.append(f"{info.name}/{member},{record_hash(data)},{len(data)}")
    lines += [*extra_record, f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(lines) + "\n")
    return info


def function_tree(root: Path, name: str = "shop") -> Path:
    """A function bundle tree (manifest and handler) without dependencies."""
    root.mkdir(parents=True)
    (root / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\n")
    (root / "main.py").write_text("def handler(event, context):\n    return event\n")
    return root
