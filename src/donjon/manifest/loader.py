"""Reading donjon.yaml from disk or text, with every problem named by field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from donjon.manifest.model import Manifest, ManifestError

__all__ = ["MANIFEST_FILE", "load_manifest", "parse_manifest"]

MANIFEST_FILE = "donjon.yaml"
_MAX_MANIFEST_BYTES = 64 * 1024
_TRIGGER_TAGS = frozenset({"http", "schedule"})


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    prev: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(prev, int) and part in _TRIGGER_TAGS:
            pass  # the discriminator's tag, not a field
        else:
            out += f".{part}" if out else part
        prev = part
    return out or "(root)"


def parse_manifest(text: str | bytes, *, source: str = MANIFEST_FILE) -> Manifest:
    """Validate manifest text; raise `ManifestError` listing every problem."""
    if len(text) > _MAX_MANIFEST_BYTES:
        raise ManifestError(f"{source} is larger than {_MAX_MANIFEST_BYTES} bytes")
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ManifestError(
            f"{source} is not valid YAML: {e}", problems=[f"(root): not valid YAML: {e}"]
        ) from e
    if not isinstance(data, dict):
        raise ManifestError(
            f"{source} must be a YAML mapping", problems=["(root): must be a mapping"]
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        problems = sorted(
            {f"{_field_path(err['loc'])}: {err['msg']}" for err in e.errors()}
        )
        raise ManifestError(
            f"{source} has {len(problems)} problem(s):\n  " + "\n  ".join(problems),
            problems=problems,
            hint="fix the fields named above; unknown fields are errors",
        ) from e


def load_manifest(bundle_dir: Path, *, label: str | None = None) -> Manifest:
    """Load and validate ``bundle_dir/donjon.yaml``.

    Messages name the bundle as `label` when given (a server names no staging
    path of its own), else by its path.
    """
    path = bundle_dir / MANIFEST_FILE
    where = str(bundle_dir) if label is None else label
    source = str(path) if label is None else MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(
            f"no {MANIFEST_FILE} in {where}",
            hint="a function bundle is a directory with donjon.yaml and its code",
        )
    manifest = parse_manifest(path.read_bytes(), source=source)
    module_file = bundle_dir / (manifest.module.replace(".", "/") + ".py")
    package_init = bundle_dir / manifest.module.replace(".", "/") / "__init__.py"
    if not module_file.is_file() and not package_init.is_file():
        raise ManifestError(
            f"{source}: handler: module {manifest.module!r} not found in the bundle",
            problems=[f"handler: module {manifest.module!r} not found"],
        )
    return manifest
