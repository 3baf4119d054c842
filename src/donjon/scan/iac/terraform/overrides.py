"""Terraform's override files merged into the module, as Terraform merges them.

A file named ``override.tf`` or ``override.tf.json``, or ending in ``_override.tf`` or
``_override.tf.json``, is read after the others, one file after another by name, and
each of its top-level blocks merges into the block of the same header (type and
labels) in the rest of the module: an argument replaces the argument of the same name,
a nested block type replaces every block of that type, the rest stays. A ``locals``
block overrides value by value. So a module whose ``main.tf`` says
``authorization_type = "AWS_IAM"`` and whose ``main_override.tf.json`` says ``NONE``
has an open function URL, and the rules must see ``NONE``.

Where a finding on the merged block points: its file stays the original's (the model
has one file per block), and what the override brings takes the line of what it
replaces there (the argument, the first nested block of that type, else the block's
header); a note names the override file and what it changed. An override block with
nothing to merge into (Terraform refuses such a module) is read as a block of its own.
"""

from __future__ import annotations

from donjon.scan.iac.terraform.syntax import Attribute, Block, shift_lines

__all__ = ["apply_overrides", "is_override"]


def is_override(path: str) -> bool:
    """Whether Terraform (or OpenTofu, for its ``.tofu`` forms) reads the file at `path`
    as an override file."""
    name = path.rsplit("/", 1)[-1].removesuffix(".json")
    return name in ("override.tf", "override.tofu") or name.endswith(
        ("_override.tf", "_override.tofu")
    )


def apply_overrides(
    blocks: list[Block], overrides: list[Block]
) -> tuple[list[Block], tuple[str, ...]]:
    """`blocks` with `overrides` (the blocks of the override files, in the order of their
    files' names) merged in, and a note for each block an override changed."""
    merged = list(blocks)
    headers: dict[tuple[str, tuple[str, ...]], int] = {}
    local_names: dict[str, int] = {}
    for index, block in enumerate(merged):
        headers.setdefault((block.type, block.labels), index)
        if block.type == "locals":
            local_names.update(dict.fromkeys(block.attributes, index))
    notes: list[str] = []
    for override in overrides:
        if override.type == "locals":
            for name, attribute in override.attributes.items():
                _override_local(merged, local_names, name, attribute, override)
            continue
        found = headers.get((override.type, override.labels))
        if found is None:
            headers[(override.type, override.labels)] = len(merged)
            merged.append(override)
            continue
        original = merged[found]
        merged[found] = _merge(original, override)
        changed = ", ".join(
            dict.fromkeys([*override.attributes, *(b.type for b in override.blocks)])
        )
        address = f"{override.type} {'.'.join(override.labels)}".strip()
        notes.append(
            f"{override.path}:{override.line}: overrides {address} of {original.path}"
            f" ({changed}), as Terraform merges it; findings on it are reported there"
        )
    return merged, tuple(notes)


def _merge(original: Block, override: Block) -> Block:
    attributes = dict(original.attributes)
    for name, attribute in override.attributes.items():
        line = original.attributes[name].line if name in original.attributes else original.line
        attributes[name] = _moved_attribute(attribute, line)
    first_lines: dict[str, int] = {}
    for nested in original.blocks:
        first_lines.setdefault(nested.type, nested.line)
    brought = [
        _moved_block(b, original.path, first_lines.get(b.type, original.line))
        for b in override.blocks
    ]
    replaced = {b.type for b in override.blocks}
    kept = [b for b in original.blocks if b.type not in replaced]
    return Block(
        original.type, original.labels, original.line, original.path, attributes, (*kept, *brought)
    )


def _override_local(
    merged: list[Block], where: dict[str, int], name: str, attribute: Attribute, override: Block
) -> None:
    """The local `name` replaced where it is declared (in whichever ``locals`` block)."""
    index = where.get(name)
    if index is None:
        where[name] = len(merged)
        merged.append(Block("locals", (), override.line, override.path, {name: attribute}))
        return
    original = merged[index]
    attributes = dict(original.attributes)
    attributes[name] = _moved_attribute(attribute, original.attributes[name].line)
    merged[index] = Block("locals", (), original.line, original.path, attributes, original.blocks)


def _moved_attribute(attribute: Attribute, line: int) -> Attribute:
    """`attribute` on `line` (its expression's lines moved with it)."""
    shift_lines(attribute.expr.tree, line - attribute.expr.line)
    return Attribute(attribute.name, attribute.expr, line)


def _moved_block(block: Block, path: str, line: int) -> Block:
    """A nested block of an override, every line of it on `line` of `path`."""
    return Block(
        block.type,
        block.labels,
        line,
        path,
        {n: _moved_attribute(a, line) for n, a in block.attributes.items()},
        tuple(_moved_block(b, path, line) for b in block.blocks),
    )
