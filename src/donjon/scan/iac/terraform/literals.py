"""The strings written literally in a Terraform module, for the template secret rule.

`App.literals` holds what a secret rule should see outside function environments
(those are in the model, with their names): variable defaults (``var.db_password``),
values in ``.tfvars`` files (where secrets are most often committed), locals, and every
literal string in a resource's attributes and nested blocks, each with its line and
its path (``master_password``, ``tags.Token``, ``connection.password``). Only strings
written as literals count (no interpolation, no reference): a value that comes from a
variable is reported where it is written, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lark import Token, Tree

from donjon.scan.iac.model import Where
from donjon.scan.iac.terraform.syntax import Block, line_of, string_value

if TYPE_CHECKING:
    from donjon.scan.iac.terraform.module import Module

__all__ = ["MAX_LITERALS", "template_literals"]

#: Literals kept per module (a generated module must not flood the rule).
MAX_LITERALS = 5000
_MAX_NESTING = 20
#: Function environments, already in the model with their variable names.
_ENVIRONMENTS = {
    "aws_lambda_function": "environment.variables",
    "azurerm_linux_function_app": "app_settings",
    "azurerm_windows_function_app": "app_settings",
    "azurerm_function_app": "app_settings",
    "google_cloudfunctions_function": "environment_variables",
    "google_cloudfunctions2_function": "service_config.environment_variables",
}

Literal = tuple[Where, str, str]


def _trees(node: Tree[Token]) -> list[Tree[Token]]:
    return [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]


def _key(node: Tree[Token]) -> str | None:
    """An object key written as a name or a literal string."""
    inner = _trees(node)[0]
    if inner.data == "expr_term":
        inner = _trees(inner)[0]
    if inner.data in ("identifier", "keyword"):
        return str(next(iter(inner.scan_values(lambda v: isinstance(v, Token)))))
    return string_value(inner) if inner.data == "string" else None


def _expression(node: Tree[Token], where: Where, path: str, out: list[Literal]) -> None:
    """The literal strings of one expression, at most `_MAX_NESTING` levels down."""
    pending = [(node, path, 0)]
    while pending and len(out) < MAX_LITERALS:
        current, at, depth = pending.pop()
        if depth > _MAX_NESTING:
            continue
        if current.data == "expr_term" and len(_trees(current)) == 1:
            pending.append((_trees(current)[0], at, depth))
        elif current.data == "string":
            value = string_value(current)
            if value:
                out.append((where.at(line_of(current)), at, value))
        elif current.data == "object":
            for elem in _trees(current):
                key = _key(_trees(elem)[0])
                if key is not None:
                    pending.append((_trees(elem)[-1], f"{at}.{key}", depth + 1))
        elif current.data == "tuple":
            for index, item in enumerate(_trees(current)):
                pending.append((item, f"{at}[{index}]", depth + 1))


def _block(block: Block, where: Where, prefix: str, skip: str, out: list[Literal]) -> None:
    for name, attribute in block.attributes.items():
        if f"{prefix}{name}" != skip:
            _expression(attribute.expr.tree, where, f"{prefix}{name}", out)
    for nested in block.blocks:
        if len(f"{prefix}{nested.type}".split(".")) <= _MAX_NESTING:
            _block(nested, where, f"{prefix}{nested.type}.", skip, out)


def template_literals(module: Module) -> tuple[Literal, ...]:
    out: list[Literal] = []
    for block in module.blocks:
        if block.type == "variable" and block.labels and "default" in block.attributes:
            where = Where(block.path, block.line, f"var.{block.labels[0]}")
            _expression(block.attributes["default"].expr.tree, where, "default", out)
        elif block.type == "locals":
            for name, attribute in block.attributes.items():
                where = Where(block.path, attribute.line, f"local.{name}")
                _expression(attribute.expr.tree, where, name, out)
    for block in module.tfvars:
        for name, attribute in block.attributes.items():
            where = Where(block.path, attribute.line, f"var.{name}")
            _expression(attribute.expr.tree, where, "default", out)
    for address, block in module.resources.items():
        skip = _ENVIRONMENTS.get(block.labels[0], "")
        _block(block, Where(block.path, block.line, address), "", skip, out)
    return tuple(out[:MAX_LITERALS])
