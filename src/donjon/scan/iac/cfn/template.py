"""A SAM or CloudFormation template: recognised by content, decoded with cfn-lint's
decoder (YAML with short-form intrinsics, or JSON; line numbers from its marks), its
``Globals`` merged and every resource's properties resolved once.

A file is a template when its top level has ``AWSTemplateFormatVersion``, a SAM
``Transform`` (``AWS::Serverless-2016-10-31``), or ``Resources`` whose types are
``AWS::*``; a file that only looks like one (`looks_like`) but does not decode is
reported as a note.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from donjon.scan.iac.cfn.resolver import Resolver, line_of_node
from donjon.scan.iac.cfn.sam_globals import merge_globals
from donjon.scan.iac.cfn.values import RList, RMap
from donjon.scan.iac.interface import IacError
from donjon.scan.iac.model import TemplateKind, Unresolved, Where

__all__ = ["Resource", "Template", "decode", "looks_like"]

_CANDIDATE = re.compile(r"AWSTemplateFormatVersion|AWS::Serverless-2016-10-31|Type\W+AWS::")
#: `.template`: CloudFormation's own extension (the console's, AWS's sample and solution
#: stacks'), JSON or YAML.
_SUFFIXES = (".yaml", ".yml", ".json", ".template")


def looks_like(name: str, text: str) -> bool:
    """Cheap test before decoding: a YAML or JSON file that mentions CloudFormation."""
    return name.endswith(_SUFFIXES) and _CANDIDATE.search(text) is not None


@dataclass
class Resource:
    """One resource: its logical id, type, where it is, and its properties resolved
    (SAM ``Globals`` merged in). `raw` keeps the decoded properties, for following
    ``Ref``/``Fn::GetAtt`` to other resources; `conditional` when the resource has a
    ``Condition`` (it may not exist)."""

    name: str
    type: str
    where: Where
    properties: RMap
    raw: Mapping[object, object]
    conditional: bool


@dataclass
class Template:
    path: str
    kind: TemplateKind
    resources: dict[str, Resource]
    resolver: Resolver
    globals_: RMap
    #: Literal string defaults of parameters, by name: (line, value).
    parameter_defaults: dict[str, tuple[int, str]]
    #: The template's ``Transform``s, as named.
    transforms: tuple[str, ...] = ()

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type in types]


def _transforms(data: Mapping[object, object]) -> list[str]:
    value = data.get("Transform")
    items = value if isinstance(value, list) else [value]
    return [str(t) for t in items if isinstance(t, str)]


def _is_template(data: object) -> bool:
    if not isinstance(data, Mapping):
        return False
    if "AWSTemplateFormatVersion" in data:
        return True
    if any(t.startswith("AWS::Serverless") for t in _transforms(data)):
        return True
    resources = data.get("Resources")
    return isinstance(resources, Mapping) and any(
        isinstance(r, Mapping) and str(r.get("Type", "")).startswith("AWS::")
        for r in resources.values()
    )


def _decode_text(path: str, text: str) -> object:
    from cfnlint.decode import cfn_json, cfn_yaml  # ~0.8 s: only once a candidate exists

    try:
        if path.endswith(".json") or (path.endswith(".template") and text.lstrip()[:1] == "{"):
            return cfn_json.loads(text)
        return cfn_yaml.loads(text, path)
    except (ValueError, cfn_json.DuplicateError, RecursionError) as e:
        raise IacError(f"{path}: not a template cfn-lint can read: {_first_line(e)}") from e
    except Exception as e:  # yaml's errors: cfn-lint lets them through unwrapped
        if type(e).__module__.startswith(("yaml", "cfnlint")):
            raise IacError(f"{path}: not a template cfn-lint can read: {_first_line(e)}") from e
        raise


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]


def _true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _parameters(data: Mapping[object, object], resolver: Resolver) -> dict[str, object]:
    out: dict[str, object] = {}
    params = data.get("Parameters")
    if not isinstance(params, Mapping):
        return out
    for name, spec in params.items():
        if not isinstance(spec, Mapping) or "Default" not in spec:
            secret = " (NoEcho)" if isinstance(spec, Mapping) and _true(spec.get("NoEcho")) else ""
            reason = f"parameter {name}{secret} has no default: it is given at deploy time"
            out[str(name)] = Unresolved(f"!Ref {name}", reason)
            continue
        default = resolver.resolve(spec["Default"])
        kind = str(spec.get("Type", ""))
        if kind.startswith("AWS::SSM::Parameter::Value"):
            # The default names the SSM parameter; its value is read at deploy time.
            reason = (
                f"parameter {name} is the value of SSM parameter {default}, read at deploy time"
            )
            out[str(name)] = Unresolved(f"!Ref {name}", reason)
            continue
        if ("List" in kind) and isinstance(default, str):
            items = RList(line_of_node(spec["Default"]))
            items.extend(part.strip() for part in default.split(","))
            default = items
        out[str(name)] = default
    return out


def decode(path: str, text: str) -> Template | None:
    """The template in `text`, or None when it is not one. Raises `IacError` when it
    looks like a template but does not decode."""
    data = _decode_text(path, text)
    if not _is_template(data) or not isinstance(data, Mapping):
        return None
    sam = any(t.startswith("AWS::Serverless") for t in _transforms(data))
    raw_resources = data.get("Resources")
    resources_in = raw_resources if isinstance(raw_resources, Mapping) else {}
    mappings = data.get("Mappings")
    names = {str(k): v for k, v in resources_in.items()}
    bare = Resolver({}, mappings if isinstance(mappings, Mapping) else {}, names)
    resolver = Resolver(
        _parameters(data, bare), mappings if isinstance(mappings, Mapping) else {}, names
    )
    globals_node = data.get("Globals") if sam else None
    globals_ = resolver.resolve(globals_node) if isinstance(globals_node, Mapping) else RMap()
    resources: dict[str, Resource] = {}
    for key, body in resources_in.items():
        if not isinstance(body, Mapping):
            continue
        kind = str(body.get("Type", ""))
        raw = body.get("Properties")
        raw = (
            merge_globals(kind, raw if isinstance(raw, Mapping) else {}, globals_node)
            if sam
            else raw
        )
        raw_map = raw if isinstance(raw, Mapping) else {}
        properties = resolver.resolve(raw_map)
        resources[str(key)] = Resource(
            str(key),
            kind,
            Where(path, line_of_node(key), str(key)),
            properties if isinstance(properties, RMap) else RMap(),
            raw_map,
            "Condition" in body,
        )
    kind_of = TemplateKind.SAM if sam else TemplateKind.CLOUDFORMATION
    globals_map = globals_ if isinstance(globals_, RMap) else RMap()
    transforms = tuple(_transforms(data))
    return Template(path, kind_of, resources, resolver, globals_map, _defaults(data), transforms)


def _defaults(data: Mapping[object, object]) -> dict[str, tuple[int, str]]:
    params = data.get("Parameters")
    out: dict[str, tuple[int, str]] = {}
    for name, spec in params.items() if isinstance(params, Mapping) else ():
        default = spec.get("Default") if isinstance(spec, Mapping) else None
        if isinstance(default, str):
            out[str(name)] = (line_of_node(default) or line_of_node(name), str(default))
    return out
