"""Serverless Framework variables (``${source:address, fallback}``) resolved over a
decoded ``serverless.yml``, before its CloudFormation intrinsics are.

What it resolves: ``${self:a.b.c}`` (any path of the file, itself resolved, nested
variables in the address included), ``${opt:stage, 'dev'}`` and every other source
with a fallback (the fallback is used, and the value is *conditional*: a CLI option
or the source may replace it at deploy time), ``${sls:stage}`` (``--stage``, else
``provider.stage``, else ``dev``; conditional), ``${aws:region}`` and
``${aws:accountId}`` (to CloudFormation's ``${AWS::Region}``/``${AWS::AccountId}``,
values the stack controls). Always `Unresolved`: ``${env:X}`` (known only where the
deploy runs, even with a fallback), ``${ssm:}``, ``${file()}``, ``${cf:}``,
``${s3:}``, ``${param:}`` and any other source, and a ``${self:}`` path the file
does not hold.

Output: the decoded nodes with variables replaced, lines kept (cfn-lint's nodes); a
conditional value is wrapped in a one-branch `Choice`, which the CloudFormation
resolver passes through and `donjon.scan.iac.cfn.values.val` reads as conditional.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from donjon.scan.iac.cfn.values import Choice
from donjon.scan.iac.model import Unresolved

__all__ = ["Variables"]

#: An innermost variable: ``${source:...}`` or ``${file(...)...}`` holding no other ``${``.
#: ``${AWS::Region}`` and ``${Bucket}`` are CloudFormation's (``Fn::Sub``), left as written.
_INNER = re.compile(r"\$\{(\s*(?:file\(|[A-Za-z][\w-]*:(?!:))[^${}]*)\}")
_MAX_DEPTH = 32
#: Variables followed per file at most (each ``${self:}`` path is resolved once and
#: remembered; this bounds files built to blow up).
_MAX_STEPS = 20_000
#: Values a file may expand to through whole-value ``${self:}`` copies of mappings and
#: lists (later readers walk every copy).
_MAX_WEIGHT = 200_000
#: A string grown past this by substitution is unresolved (a file built to blow up).
_MAX_LENGTH = 1 << 20
_AWS = {"region": "${AWS::Region}", "accountId": "${AWS::AccountId}"}
#: Sources known only when the deploy runs, and why (pairs, not a dict display: the
#: scan's own secret rule reads `"secretsmanager": "<prose>"` as a password).
_DEPLOY_TIME_SOURCES = (
    ("env", "an environment variable of the deploy, known only when it runs"),
    ("ssm", "an SSM parameter, read at deploy time"),
    ("cf", "another stack's output, read at deploy time"),
    ("s3", "an S3 object, read at deploy time"),
    ("param", "a Serverless Dashboard parameter, read at deploy time"),
    ("file", "a file read at deploy time (not followed by the scan)"),
    ("secretsmanager", "a Secrets Manager secret, read at deploy time"),
)
_DEPLOY_TIME = dict(_DEPLOY_TIME_SOURCES)


@dataclass(frozen=True)
class _Value:
    """One variable's value while a string is being resolved."""

    value: object
    conditional: bool = False


class _Failed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _split_args(body: str) -> list[str]:
    """``opt:stage, 'dev'`` into its parts, commas inside quotes kept."""
    parts, current, quote = [], "", ""
    for ch in body:
        if quote:
            current += ch
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            current += ch
            quote = ch
        elif ch == ",":
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return parts


def _literal(text: str) -> object:
    """A fallback as written: quoted string, number, boolean, or a bare word."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def _source(ref: str) -> tuple[str, str]:
    """``self:a.b`` -> (``self``, ``a.b``); ``file(x.yml):k`` -> (``file``, ...)."""
    if ref.startswith("file("):
        return "file", ref[5:]
    name, _, address = ref.partition(":")
    return name.strip(), address.strip()


class Variables:
    """Resolves the variables of one decoded ``serverless.yml``."""

    def __init__(self, document: Mapping[object, object]) -> None:
        # cfn-lint's marked nodes (lines kept through resolution); imported here, once a
        # serverless file exists, not when the scanner is (~0.7 s).
        from cfnlint.decode.node import dict_node, list_node, str_node

        self._dict_node, self._list_node, self._str_node = dict_node, list_node, str_node
        self._doc = document
        self._steps = 0
        self._seen: dict[str, object] = {}
        self._weights: dict[int, int] = {}
        self._weight = 0

    def resolve(self, node: object, depth: int = 0) -> object:
        """`node` with every variable in it resolved (or `Unresolved`)."""
        if depth > _MAX_DEPTH:
            return Unresolved(str(node)[:200], "nested too deeply")
        if isinstance(node, Mapping):
            out = self._dict_node({}, _mark(node, "start_mark"), _mark(node, "end_mark"))
            for key, value in node.items():
                out[key] = self.resolve(value, depth + 1)
            return out
        if isinstance(node, list):
            items = self._list_node([], _mark(node, "start_mark"), _mark(node, "end_mark"))
            items.extend(self.resolve(item, depth + 1) for item in node)
            return items
        if isinstance(node, str) and "${" in node:
            return self._string(node, depth)
        return node

    def _string(self, text: str, depth: int) -> object:
        try:
            found = self._interpolate(text, depth)
        except _Failed as e:
            return Unresolved(str(text), e.reason)
        value = found.value
        if isinstance(value, str):
            value = self._str_node(value, _mark(text, "start_mark"), _mark(text, "end_mark"))
        return Choice((value,)) if found.conditional else value

    def _interpolate(self, text: str, depth: int) -> _Value:
        """Innermost variables first; a string that is one variable takes its value
        whole (a mapping, a list, a number)."""
        conditional = False
        current = str(text)
        while True:
            self._steps += 1
            if self._steps > _MAX_STEPS or depth > _MAX_DEPTH:
                raise _Failed("too many variables to follow")
            match = _INNER.search(current)
            if match is None:
                return _Value(current, conditional)
            found = self._variable(match.group(1), depth + 1)
            conditional = conditional or found.conditional
            if match.span() == (0, len(current)):
                return _Value(found.value, conditional)
            value = found.value
            if isinstance(value, Choice):
                value = value.branches[0]
            if isinstance(value, Unresolved):
                raise _Failed(value.reason)
            if isinstance(value, Mapping | list):
                raise _Failed("a mapping or list inside a string")
            piece = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if len(current) + len(piece) > _MAX_LENGTH:
                raise _Failed("a value past 1 MiB once its variables are substituted")
            current = current[: match.start()] + piece + current[match.end() :]

    def _variable(self, body: str, depth: int) -> _Value:
        ref, *fallbacks = _split_args(body)
        source, address = _source(ref)
        if source == "self":
            return self._self(address, fallbacks, depth)
        if source == "aws" and address in _AWS:
            return _Value(_AWS[address])
        if source == "sls" and address == "stage":
            return self._stage(depth)
        if source in _DEPLOY_TIME:
            raise _Failed(_DEPLOY_TIME[source])
        if fallbacks:  # opt: and any other source: the fallback, unless overridden
            return _Value(_literal(fallbacks[0]), True)
        if source == "opt":
            raise _Failed(f"CLI option --{address} given at deploy time, no fallback")
        raise _Failed(f"variable source {source or ref!r} is not resolved by the scan")

    def _self(self, address: str, fallbacks: list[str], depth: int) -> _Value:
        """``${self:a.b}``: the value at that path, resolved once and remembered."""
        target = self._lookup(address)
        if target is None:
            if not fallbacks:
                raise _Failed(f"self:{address} is not in the file")
            return _Value(_literal(fallbacks[0]))
        if address not in self._seen:
            self._seen[address] = self.resolve(target, depth + 1)
        resolved = self._seen[address]
        if isinstance(resolved, Mapping | list):
            self._weight += self._weigh(resolved)
            if self._weight > _MAX_WEIGHT:
                raise _Failed("the file expands past 200,000 values through ${self:}")
        if isinstance(resolved, Unresolved):
            raise _Failed(resolved.reason)
        if isinstance(resolved, Choice):
            return _Value(resolved.branches[0], True)
        return _Value(resolved)

    def _weigh(self, node: object) -> int:
        """The values a structure holds, each shared part counted every time it is held."""
        if not isinstance(node, Mapping | list):
            return 1
        key = id(node)
        if key not in self._weights:
            items = node.values() if isinstance(node, Mapping) else node
            self._weights[key] = 1 + sum(self._weigh(item) for item in items)
        return self._weights[key]

    def _stage(self, depth: int) -> _Value:
        provider = self._doc.get("provider")
        stage = provider.get("stage") if isinstance(provider, Mapping) else None
        if stage is None:
            return _Value("dev", True)
        resolved = self.resolve(stage, depth + 1)
        if isinstance(resolved, Unresolved):
            raise _Failed(resolved.reason)
        inner = resolved.branches[0] if isinstance(resolved, Choice) else resolved
        return _Value(inner, True)  # --stage overrides provider.stage

    def _lookup(self, address: str) -> object:
        """The node at a dotted path of the file (``""`` is the whole file)."""
        node: object = self._doc
        for part in (p for p in address.split(".") if p):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node


def _mark(node: object, name: str) -> object:
    return getattr(node, name, None)
