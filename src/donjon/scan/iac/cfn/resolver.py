"""The CloudFormation resolver: intrinsic functions of a decoded template to values.

What it resolves: ``Ref`` (a parameter to its default, a pseudo parameter, a
resource to ``${LogicalId}``), ``Fn::Sub`` (both forms), ``Fn::GetAtt`` (to
``${LogicalId.Attribute}``), ``Fn::FindInMap``, ``Fn::Join``, ``Fn::Select``,
``Fn::Split`` and ``Fn::If`` (both branches, a `Choice`). A resource's own value is
never known before deployment; it is written in ``Fn::Sub`` syntax, a value the
stack controls. Pseudo parameters with one value resolve to it (``AWS::Partition``
is ``aws``, ``AWS::URLSuffix`` ``amazonaws.com``), the others stay as
``${AWS::Region}``. Everything else (``Fn::ImportValue``, ``Fn::Base64``,
``{{resolve:...}}`` dynamic references, a parameter without a default, a name that
does not exist) is an `Unresolved` holding the expression as written.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

from donjon.scan.iac.cfn.values import NO_VALUE, Choice, RList, RMap, options, written
from donjon.scan.iac.model import Unresolved

__all__ = ["Resolver", "line_of_node"]

_PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::AccountId": "${AWS::AccountId}",
    "AWS::Region": "${AWS::Region}",
    "AWS::StackName": "${AWS::StackName}",
    "AWS::StackId": "${AWS::StackId}",
    "AWS::NotificationARNs": "${AWS::NotificationARNs}",
}
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")
_DYNAMIC = re.compile(r"\{\{resolve:[^}]*\}\}")
_MAX_DEPTH = 64
_MAX_CHOICES = 16


def line_of_node(node: object) -> int:
    """The 1-based line of a decoded node (0 when it has no mark: numbers, booleans)."""
    mark = getattr(node, "start_mark", None)
    line = getattr(mark, "line", None)
    return line + 1 if isinstance(line, int) else 0


class Resolver:
    """Resolves values of one template: its parameters, mappings and resources."""

    def __init__(
        self,
        parameters: Mapping[str, object],
        mappings: Mapping[str, object],
        resources: Mapping[str, object],
        bindings: Mapping[str, object] | None = None,
    ) -> None:
        self._parameters = parameters
        self._mappings = mappings
        self._resources = resources
        self._bindings = dict(bindings or {})

    def bound(self, bindings: Mapping[str, object]) -> Resolver:
        """The same template with extra names for ``Ref`` (a SAM policy template's
        parameters), resolved already."""
        return Resolver(self._parameters, self._mappings, self._resources, bindings)

    def resolve(self, node: object, depth: int = 0) -> object:
        """The value of a decoded node, every intrinsic in it resolved or `Unresolved`."""
        if depth > _MAX_DEPTH:
            return Unresolved(written(node)[:200], "nested too deeply")
        if isinstance(node, Mapping):
            if len(node) == 1:
                key = next(iter(node))
                if key == "Ref" or (isinstance(key, str) and key.startswith("Fn::")):
                    return self._intrinsic(str(key), node[key], node, depth + 1)
            out = RMap(line_of_node(node))
            for key, value in node.items():
                resolved = self.resolve(value, depth + 1)
                if resolved is not NO_VALUE:
                    out[str(key)] = resolved
                    out.key_lines[str(key)] = line_of_node(key)
            return out
        if isinstance(node, list):
            items = RList(line_of_node(node))
            for item in node:
                resolved = self.resolve(item, depth + 1)
                if resolved is not NO_VALUE:
                    items.append(resolved)
                    items.item_lines.append(line_of_node(item))
            return items
        if isinstance(node, str) and _DYNAMIC.search(node):
            return Unresolved(str(node), "a dynamic reference, resolved only at deploy time")
        return str(node) if isinstance(node, str) else node

    def ref(self, name: str, node: object) -> object:
        """What ``Ref name`` stands for."""
        if name in self._bindings:
            return self._bindings[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in _PSEUDO:
            return _PSEUDO[name]
        if name in self._parameters:
            return self._parameters[name]
        if name in self._resources:
            return "${" + name + "}"
        return Unresolved(written(node), f"{name} is not a parameter or resource of the template")

    def _intrinsic(self, key: str, arg: object, node: object, depth: int) -> object:
        if key == "Ref":
            return self.ref(str(arg), node) if isinstance(arg, str) else _bad(node)
        if key == "Fn::If":
            if not isinstance(arg, list) or len(arg) != 3:
                return _bad(node)
            return Choice((self.resolve(arg[1], depth), self.resolve(arg[2], depth)))
        handler = {
            "Fn::Sub": self._sub,
            "Fn::GetAtt": self._getatt,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
        }.get(key)
        if handler is None:
            return Unresolved(written(node), f"{key} is not resolved before deployment")
        return handler(arg, node, depth)

    def _getatt(self, arg: object, node: object, depth: int) -> object:
        parts = arg.split(".", 1) if isinstance(arg, str) else arg
        if not isinstance(parts, list) or len(parts) != 2:
            return _bad(node)
        name, attribute = parts[0], self.resolve(parts[1], depth)
        if str(name) not in self._resources or not isinstance(attribute, str):
            return Unresolved(written(node), f"{name} is not a resource of the template")
        return "${" + f"{name}.{attribute}" + "}"

    def _sub(self, arg: object, node: object, depth: int) -> object:
        text, variables = (arg, {}) if isinstance(arg, str) else _pair(arg)
        if not isinstance(text, str) or not isinstance(variables, Mapping):
            return _bad(node)
        local = {str(k): self.resolve(v, depth) for k, v in variables.items()}
        pieces: list[object] = []
        position = 0
        for match in _SUB_VAR.finditer(text):
            pieces.append(text[position : match.start()])
            position = match.end()
            name = match.group(1)
            if name.startswith("!"):
                pieces.append("${" + name[1:] + "}")
            elif name in local:
                pieces.append(local[name])
            elif "." in name and name.split(".", 1)[0] in self._resources:
                pieces.append("${" + name + "}")
            else:
                pieces.append(self.ref(name, {"Ref": name}))
        pieces.append(text[position:])
        return _concat(pieces, node)

    def _find_in_map(self, arg: object, node: object, depth: int) -> object:
        if not isinstance(arg, list) or len(arg) < 3:
            return _bad(node)
        keys = [self.resolve(a, depth) for a in arg[:3]]
        fallback = arg[3] if len(arg) > 3 and isinstance(arg[3], Mapping) else {}
        current: object = self._mappings
        for key in keys:
            if not isinstance(key, str) or not isinstance(current, Mapping) or key not in current:
                if isinstance(key, str) and "DefaultValue" in fallback:  # LanguageExtensions
                    return self.resolve(fallback["DefaultValue"], depth)
                return Unresolved(written(node), "the map keys are not all known")
            current = current[key]
        return self.resolve(current, depth)

    def _join(self, arg: object, node: object, depth: int) -> object:
        pair = _pair(arg)
        delimiter, items = pair[0], self.resolve(pair[1], depth)
        if not isinstance(delimiter, str) or not isinstance(items, list):
            return Unresolved(written(node), "the list joined is not known")
        pieces: list[object] = []
        for index, item in enumerate(items):
            pieces.extend([delimiter, item] if index else [item])
        return _concat(pieces, node)

    def _select(self, arg: object, node: object, depth: int) -> object:
        pair = _pair(arg)
        index, items = self.resolve(pair[0], depth), self.resolve(pair[1], depth)
        try:
            position = int(str(index))
        except ValueError:
            return Unresolved(written(node), "the index is not known")
        if not isinstance(items, list) or not 0 <= position < len(items):
            return Unresolved(written(node), "the list is not known")
        return items[position]

    def _split(self, arg: object, node: object, depth: int) -> object:
        pair = _pair(arg)
        delimiter, text = pair[0], self.resolve(pair[1], depth)
        if not isinstance(delimiter, str) or not isinstance(text, str) or not delimiter:
            return Unresolved(written(node), "the string split is not known")
        out = RList(line_of_node(node))
        out.extend(text.split(delimiter))
        return out


def _pair(arg: object) -> tuple[object, object]:
    if isinstance(arg, Sequence) and not isinstance(arg, str) and len(arg) == 2:
        return arg[0], arg[1]
    return None, None


def _bad(node: object) -> Unresolved:
    return Unresolved(written(node), "not a valid intrinsic function")


def _concat(pieces: list[object], node: object) -> object:
    """The string the pieces make; an unresolved piece makes it unresolved, and branches
    make one string per combination (up to a bound)."""
    choices: list[list[str]] = []
    for piece in pieces:
        branches = [b for b, _ in options(piece)] if isinstance(piece, Choice) else [piece]
        texts: list[str] = []
        for branch in branches:
            if isinstance(branch, Unresolved):
                return Unresolved(written(node), f"it uses {branch.expression}: {branch.reason}")
            if isinstance(branch, str | int | float) and not isinstance(branch, bool):
                texts.append(str(branch))
            elif branch is not NO_VALUE:
                return Unresolved(written(node), "a part is not a string")
        choices.append(texts or [""])
    combined = ["".join(parts) for parts in itertools.islice(itertools.product(*choices), 64)]
    unique = list(dict.fromkeys(combined))
    if len(unique) == 1:
        return unique[0]
    if len(unique) > _MAX_CHOICES:
        return Unresolved(written(node), "too many combinations of conditions")
    return Choice(tuple(unique))
