"""One Terraform module (a directory of ``.tf`` files) and its references resolved.

What a reference resolves to:

- ``var.x``: the variable's default, overridden by ``terraform.tfvars`` and
  ``*.auto.tfvars`` (which Terraform always loads; their ``.json`` forms too); another
  ``*.tfvars`` in the directory (passed with ``-var-file``) is one more value the
  variable may take, so a variable set differently by ``dev.tfvars`` and
  ``prod.tfvars`` is a `Choice`. A variable with neither is unresolved.
- ``local.x``: the local's expression, evaluated in turn (a cycle is unresolved).
- ``TYPE.NAME.attr`` of a resource of the module: the attribute as written there when
  it is, a few computed ones (an S3 bucket's ``id`` and ``arn``), else a `Ref` (known
  to be that resource's attribute, not known as text).
- ``data.aws_iam_policy_document.NAME.json``: the document built from its blocks.
- Other data sources, module outputs, ``path``, ``each``, ``count``, ``self``:
  unresolved, with the reference as written.
"""

from __future__ import annotations

from typing import Any

from donjon.scan.iac.model import Unresolved
from donjon.scan.iac.terraform.evaluate import Evaluator, Key, Step, step_into
from donjon.scan.iac.terraform.policy_document import policy_document
from donjon.scan.iac.terraform.syntax import Attribute, Block, Expr
from donjon.scan.iac.terraform.values import Choice, Ref

__all__ = ["Module"]

_PLAN_TIME = frozenset({"path", "terraform", "count", "each", "self"})


class Module:
    """The blocks of one directory, with a resolver for their expressions."""

    def __init__(self, directory: str, blocks: list[Block], tfvars: list[Block]) -> None:
        self.directory = directory
        self.blocks = blocks
        self.tfvars = tfvars
        self.resources: dict[str, Block] = {}
        self.data: dict[str, Block] = {}
        self.locals: dict[str, Attribute] = {}
        for block in blocks:
            if block.type in ("resource", "data") and len(block.labels) == 2:
                table = self.resources if block.type == "resource" else self.data
                table.setdefault(".".join(block.labels), block)
            elif block.type == "locals":
                self.locals.update(block.attributes)
        self._by_type: dict[str, list[tuple[str, Block]]] = {}
        for address, block in self.resources.items():
            self._by_type.setdefault(block.labels[0], []).append((address, block))
        self._indexes: dict[tuple[str, str], dict[str, str]] = {}
        self._evaluator = Evaluator(self._lookup)
        self._busy: set[str] = set()
        self._cache: dict[str, Any] = {}
        self._values: dict[int, tuple[Attribute, Any]] = {}
        self.variables: dict[str, Any] = {}  # a default referring to a variable: unresolved
        self.variables = self._variables(tfvars)

    def of_type(self, kind: str) -> list[tuple[str, Block]]:
        """The resources of one type, with their addresses."""
        return self._by_type.get(kind, [])

    def index(self, kind: str, attribute: str) -> dict[str, str]:
        """The resources of one type by the literal value of one attribute (a role by
        its ``name``), first declared first; built once."""
        key = (kind, attribute)
        if key not in self._indexes:
            found: dict[str, str] = {}
            for address, block in self.of_type(kind):
                value, _ = self.attr(block, attribute)
                if isinstance(value, str) and not isinstance(value, Ref):
                    found.setdefault(value, address)
            self._indexes[key] = found
        return self._indexes[key]

    def value(self, expr: Expr) -> Any:
        return self._evaluator.value(expr)

    def attr(self, block: Block | None, name: str) -> tuple[Any, int]:
        """An attribute of `block` evaluated, and its line; (None, 0) when absent."""
        if block is None or name not in block.attributes:
            return None, 0
        attribute = block.attributes[name]
        cached = self._values.get(id(attribute))
        if cached is None:
            # Keyed by the attribute, kept alive with it: each is evaluated once, however
            # many resources look at it (a module of n functions is not n² evaluations).
            cached = (attribute, self.value(attribute.expr))
            self._values[id(attribute)] = cached
        return cached[1], attribute.line

    def _variables(self, tfvars: list[Block]) -> dict[str, Any]:
        declared: dict[str, Any] = {}
        for block in self.blocks:
            if block.type == "variable" and block.labels:
                name = block.labels[0]
                value, line = self.attr(block, "default")
                declared[name] = (
                    value
                    if line
                    else Unresolved(f"var.{name}", "variable without a default or .tfvars value")
                )
        alternatives: dict[str, list[Any]] = {}
        for block in sorted(tfvars, key=lambda b: _tfvars_order(b.path)):
            always = _tfvars_order(block.path)[0] < 2
            for name, attribute in block.attributes.items():
                if name not in declared:
                    continue
                value = self.value(attribute.expr)
                if always:
                    declared[name] = value
                else:
                    alternatives.setdefault(name, []).append(value)
        for name, values in alternatives.items():
            base = declared[name]
            options = ([] if isinstance(base, Unresolved) else [base]) + values
            distinct = [v for i, v in enumerate(options) if v not in options[:i]]
            declared[name] = distinct[0] if len(distinct) == 1 else Choice(distinct)
        return declared

    def _lookup(self, steps: list[Step], written: str) -> Any:
        root = steps[0]
        if root == "var" and len(steps) > 1:
            value = self.variables.get(str(steps[1]), Unresolved(written, "no such variable"))
            return _walk(value, steps[2:], written)
        if root == "local" and len(steps) > 1:
            name = str(steps[1])
            if name not in self.locals:
                return Unresolved(written, "no such local")
            return _walk(
                self._once(f"local.{name}", self.locals[name].expr, written), steps[2:], written
            )
        if root == "data" and len(steps) > 3:
            return self._data(steps, written)
        if root == "module":
            return Unresolved(written, "module output not read")
        if root in _PLAN_TIME:
            return Unresolved(written, f"{root}.* known only at plan time")
        if len(steps) > 1 and f"{root}.{steps[1]}" in self.resources:
            return self._resource(f"{root}.{steps[1]}", _skip_index(steps[2:]), written)
        return Unresolved(written, "not a variable, local or resource of this module")

    def _once(self, key: str, expr: Expr, written: str) -> Any:
        if key in self._cache:
            return self._cache[key]
        if key in self._busy:
            return Unresolved(written, "refers to itself")
        self._busy.add(key)
        try:
            value = self.value(expr)
        finally:
            self._busy.discard(key)
        self._cache[key] = value
        return value

    def _data(self, steps: list[Step], written: str) -> Any:
        kind, name = str(steps[1]), str(steps[2])
        block = self.data.get(f"{kind}.{name}")
        rest = _skip_index(steps[3:])
        if block is None:
            return Unresolved(written, "no such data source in this module")
        if kind == "aws_iam_policy_document" and rest and rest[0] in ("json", "minified_json"):
            key = f"data.{kind}.{name}"
            if key in self._busy:
                return Unresolved(written, "refers to itself")
            self._busy.add(key)
            try:
                return policy_document(self, block)
            finally:
                self._busy.discard(key)
        return Unresolved(written, f"data source {kind} is read at plan time")

    def _resource(self, address: str, rest: list[Step], written: str) -> Any:
        block = self.resources[address]
        attribute = str(rest[0]) if rest else "id"
        if attribute in block.attributes and attribute not in ("id", "arn"):
            value = self._once(f"{address}.{attribute}", block.attributes[attribute].expr, written)
            return _walk(value, rest[1:], written)
        if address.startswith("aws_s3_bucket.") and attribute in ("id", "bucket", "arn"):
            bucket, _ = self.attr(block, "bucket")
            if isinstance(bucket, str):
                return bucket if attribute != "arn" else f"arn:aws:s3:::{bucket}"
        return _walk(Ref(address, attribute), rest[1:], written)


def _walk(value: Any, steps: list[Step], written: str) -> Any:
    for step in steps:
        if isinstance(value, Ref):
            return value
        value = step_into(value, step, written)
    return value


def _skip_index(steps: list[Step]) -> list[Step]:
    """The steps after a resource's instance index (``aws_iam_role.r[0].arn``,
    ``aws_iam_role.r["a"].arn``)."""
    while steps and (not isinstance(steps[0], str) or isinstance(steps[0], Key)):
        steps = steps[1:]
    return steps


def _tfvars_order(path: str) -> tuple[int, str]:
    """terraform.tfvars, then *.auto.tfvars (both always loaded), then the others; each
    name's ``.json`` form (Terraform's JSON syntax) after it."""
    name = path.rsplit("/", 1)[-1]
    if name in ("terraform.tfvars", "terraform.tfvars.json"):
        return 0, name
    return (1 if name.endswith((".auto.tfvars", ".auto.tfvars.json")) else 2), name
