"""Reading donjon.yaml from disk or text, with every problem named by field path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from donjon.manifest.model import Manifest, ManifestError

__all__ = [
    "MANIFEST_FILE",
    "NoAliasLoader",
    "YamlAliasError",
    "YamlDuplicateKeyError",
    "load_manifest",
    "load_yaml",
    "parse_manifest",
    "parse_stored_manifest",
]

MANIFEST_FILE = "donjon.yaml"
_MAX_MANIFEST_BYTES = 64 * 1024
_TRIGGER_TAGS = frozenset({"http", "schedule"})


class YamlAliasError(yaml.YAMLError):
    """A manifest used a YAML anchor or alias."""

    def __init__(self, line: int) -> None:
        super().__init__(
            f"line {line}: YAML anchors and aliases (&name, *name, <<: *name) "
            "are not allowed in a manifest"
        )
        self.line = line


class YamlDepthError(yaml.YAMLError):
    """A manifest nested collections deeper than any manifest needs."""

    def __init__(self, line: int) -> None:
        super().__init__(f"line {line}: collections nested more than {MAX_YAML_DEPTH} deep")
        self.line = line


class YamlDuplicateKeyError(yaml.YAMLError):
    """A mapping named one key twice (PyYAML would keep the last one, silently)."""

    def __init__(self, line: int, key: str) -> None:
        super().__init__(f"line {line}: {key[:80]!r} is given twice in one mapping")
        self.line = line


#: Deeper than any manifest needs (input_schema itself is capped at 32), and far
#: below the depth where PyYAML's recursive composer would hit the recursion limit.
MAX_YAML_DEPTH = 64


class NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses anchors and aliases, so a document builds no more
    nodes than its text holds (aliases make a few hundred bytes into millions of nodes
    for whatever walks them: pydantic, jsonschema, json.dumps), and refuses nesting
    past MAX_YAML_DEPTH before the recursive composer goes that deep."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise YamlAliasError(event.start_mark.line + 1)
        if self._depth >= MAX_YAML_DEPTH:
            raise YamlDepthError(event.start_mark.line + 1)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.MappingNode):
            _refuse_duplicate_keys(node)
        return node


def _refuse_duplicate_keys(node: yaml.MappingNode) -> None:
    """YAML keys are unique (YAML 1.2, 3.2.1.1): a reviewer reading the first of two
    `permissions:` would pass a manifest that PyYAML reads with the second."""
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode):
            if (key.tag, key.value) in seen:
                raise YamlDuplicateKeyError(key.start_mark.line + 1, key.value)
            seen.add((key.tag, key.value))


def load_yaml(text: str | bytes) -> Any:
    """Parse YAML with `NoAliasLoader`; `yaml.YAMLError` (`YamlAliasError` for aliases)."""
    loader = NoAliasLoader(text)  # what yaml.load does, with the loader named outright
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


#: What a refusal's summary names of the fields (the audit log keeps it).
_MAX_SUMMARY_FIELDS = 10
_MAX_SUMMARY_FIELD = 80


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
        data: Any = load_yaml(text)
    except YamlAliasError as e:
        raise ManifestError(
            f"{source}: {e}",
            problems=[f"(root): {e}"],
            hint="write the repeated part out in full; JSON Schema's $ref and $defs can "
            "share subschemas inside input_schema",
        ) from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ManifestError(
            f"{source} is not valid YAML: {e}",
            problems=[f"(root): not valid YAML: {e}"],
            summary=f"{source} is not valid YAML{where}",
        ) from e
    return _validate(data, source)


def parse_stored_manifest(text: str) -> Manifest:
    """A manifest the node stored after validating it (JSON from `manifest_json`):
    validated again, read with the JSON parser, not the much slower YAML one."""
    try:
        data: Any = json.loads(text)
    except ValueError as e:
        raise ManifestError(f"stored manifest is not JSON: {e}") from e
    return _validate(data, "stored manifest")


def _validate(data: Any, source: str) -> Manifest:
    if not isinstance(data, dict):
        raise ManifestError(
            f"{source} must be a YAML mapping", problems=["(root): must be a mapping"]
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        problems = sorted({f"{_field_path(err['loc'])}: {err['msg']}" for err in errors})
        fields = sorted({_field_path(err["loc"])[:_MAX_SUMMARY_FIELD] for err in errors})
        named = ", ".join(fields[:_MAX_SUMMARY_FIELDS])
        if len(fields) > _MAX_SUMMARY_FIELDS:
            named += f" and {len(fields) - _MAX_SUMMARY_FIELDS} more"
        raise ManifestError(
            f"{source} has {len(problems)} problem(s):\n  " + "\n  ".join(problems),
            problems=problems,
            hint="fix the fields named above; unknown fields are errors",
            summary=f"{source} has {len(problems)} problem(s), at {named}",
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
    # One byte past the bound, no more: a manifest linked to a huge file (or one that grows)
    # is refused by parse_manifest, not read whole first.
    with path.open("rb") as f:
        manifest = parse_manifest(f.read(_MAX_MANIFEST_BYTES + 1), source=source)
    module_file = bundle_dir / (manifest.module.replace(".", "/") + ".py")
    package_init = bundle_dir / manifest.module.replace(".", "/") / "__init__.py"
    if not module_file.is_file() and not package_init.is_file():
        raise ManifestError(
            f"{source}: handler: module {manifest.module!r} not found in the bundle",
            problems=[f"handler: module {manifest.module!r} not found"],
        )
    return manifest
