"""``data "aws_iam_policy_document"`` built into the IAM JSON it renders.

Each ``statement`` block becomes one IAM statement (``effect`` defaults to Allow;
``actions``, ``not_actions``, ``resources``, ``not_resources``; ``principals`` and
``not_principals`` blocks by type; ``condition`` blocks as ``{test: {variable:
values}}``), with the block's line. ``source_policy_documents`` and
``override_policy_documents`` add their statements (the union: what the merge keeps
is a subset of it). The result is a `Json` whose value the shared statement parser
reads like any other policy.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from donjon.scan.iac.model import Unresolved
from donjon.scan.iac.terraform.syntax import Block
from donjon.scan.iac.terraform.values import Arr, Json, Obj, TooLarge, describe

if TYPE_CHECKING:
    from donjon.scan.iac.terraform.module import Module

__all__ = ["decode", "policy_document", "statements_of"]

_FIELDS = (
    ("sid", "Sid"),
    ("effect", "Effect"),
    ("actions", "Action"),
    ("not_actions", "NotAction"),
    ("resources", "Resource"),
    ("not_resources", "NotResource"),
)


def statements_of(document: Any) -> list[Any]:
    """The statements of an evaluated policy (a `Json`, JSON text or an object), for
    merging; an unknown document is one unknown statement."""
    if isinstance(document, Json):
        document = document.value
    if isinstance(document, dict) and isinstance(document.get("Statement"), list):
        return list(document["Statement"])
    if isinstance(document, dict) and "Statement" in document:
        return [document["Statement"]]
    if isinstance(document, Unresolved):
        return [document]
    return [Unresolved(describe(document), "not a policy document")]


def _principals(module: Module, blocks: tuple[Block, ...]) -> Obj | Unresolved:
    out = Obj(line=blocks[0].line)
    for block in blocks:
        kind, _ = module.attr(block, "type")
        names, _ = module.attr(block, "identifiers")
        if not isinstance(kind, str):
            return Unresolved(f"principals type {describe(kind)}", "principal type not known")
        items = list(names) if isinstance(names, list) else [names]
        existing = out.get(kind, [])
        out[kind] = [*existing, *items]
    return out


def _conditions(module: Module, blocks: tuple[Block, ...]) -> Obj | Unresolved:
    out = Obj(line=blocks[0].line)
    for block in blocks:
        test, _ = module.attr(block, "test")
        variable, _ = module.attr(block, "variable")
        values, _ = module.attr(block, "values")
        if not isinstance(test, str) or not isinstance(variable, str):
            written = f"condition {describe(test)} {describe(variable)}"
            return Unresolved(written, "condition test or variable not known")
        out.setdefault(test, Obj(line=block.line))[variable] = values
    return out


def _statement(module: Module, block: Block) -> Obj:
    statement = Obj({"Effect": "Allow"}, line=block.line)
    for name, key in _FIELDS:
        value, line = module.attr(block, name)
        if line:
            statement[key] = value
    for name, key in (("principals", "Principal"), ("not_principals", "NotPrincipal")):
        blocks = block.nested(name)
        if blocks:
            statement[key] = _principals(module, blocks)
    conditions = block.nested("condition")
    if conditions:
        statement["Condition"] = _conditions(module, conditions)
    return statement


def policy_document(module: Module, block: Block) -> Json | Unresolved:
    """The document a ``data "aws_iam_policy_document"`` block renders."""
    statements = Arr(line=block.line)
    for name in ("source_policy_documents", "override_policy_documents"):
        documents, _ = module.attr(block, name)
        if documents is None:
            continue
        for document in documents if isinstance(documents, list) else [documents]:
            statements.extend(statements_of(document))
    for name in ("source_json", "override_json"):
        document, line = module.attr(block, name)
        if line:
            statements.extend(statements_of(decode(document, line)))
    statements.extend(_statement(module, s) for s in block.nested("statement"))
    for dynamic in block.nested("dynamic"):
        if dynamic.labels[:1] == ("statement",):
            why = "dynamic statement blocks are not expanded"
            statements.append(Unresolved(f'dynamic "statement" (line {dynamic.line})', why))
    try:
        return Json(Obj({"Version": "2012-10-17", "Statement": statements}, line=block.line))
    except TooLarge:
        return Unresolved(f"data.aws_iam_policy_document (line {block.line})", "too large")


def decode(document: Any, line: int) -> Any:
    """A policy as evaluated, as a structure: a `Json`'s value, JSON text (a heredoc, a
    quoted string) parsed with every object on `line`, an object as it is; JSON that
    does not parse is unresolved."""
    if isinstance(document, Json):
        return document.value
    if isinstance(document, str):
        try:
            return _lined(json.loads(document), line)
        except (ValueError, RecursionError):
            return Unresolved(document.strip()[:200], "policy is not valid JSON")
    return document


def _lined(value: Any, line: int) -> Any:
    if isinstance(value, dict):
        return Obj({str(k): _lined(v, line) for k, v in value.items()}, line=line)
    if isinstance(value, list):
        return Arr([_lined(v, line) for v in value], line=line)
    return value
