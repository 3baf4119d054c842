"""A ``serverless.yml`` (``.yaml``, ``.json``) decoded and resolved: Serverless
variables first (`variables`), then the CloudFormation intrinsics its IAM statements
and ``resources`` use (the cfn package's resolver, over ``resources.Resources``).

The file is decoded with cfn-lint's decoder (the same as for SAM templates): it keeps
every line and reads ``!Ref``/``!GetAtt`` short forms, which plain YAML loaders refuse.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from donjon.scan.iac.cfn.resolver import Resolver, line_of_node
from donjon.scan.iac.cfn.template import Resource, Template
from donjon.scan.iac.cfn.values import RMap
from donjon.scan.iac.interface import IacError
from donjon.scan.iac.model import TemplateKind, Where
from donjon.scan.iac.serverless.variables import Variables

__all__ = ["NAMES", "Document", "decode", "is_candidate"]

NAMES = ("serverless.yml", "serverless.yaml", "serverless.json")


def is_candidate(path: str) -> bool:
    """A Serverless Framework service file, by its name."""
    return posixpath.basename(path) in NAMES


@dataclass
class Document:
    """A resolved service file: its top level as an `RMap` (lines kept) and its
    ``resources.Resources`` as a CloudFormation `Template` (no parameters, no Globals)."""

    path: str
    root: RMap
    resources: Template

    def section(self, *keys: str) -> RMap:
        """The mapping at `keys` (an empty one when absent or not a mapping)."""
        node: object = self.root
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        return node if isinstance(node, RMap) else RMap()


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]


def _load(path: str, text: str) -> object:
    from cfnlint.decode import cfn_json, cfn_yaml  # ~0.8 s: only once a candidate exists

    try:
        if path.endswith(".json"):
            return cfn_json.loads(text)
        return cfn_yaml.loads(text, path)
    except (ValueError, cfn_json.DuplicateError, RecursionError) as e:
        raise IacError(f"{path}: not a Serverless file that can be read: {_first_line(e)}") from e
    except Exception as e:  # yaml's errors: cfn-lint lets them through unwrapped
        if type(e).__module__.startswith(("yaml", "cfnlint")):
            raise IacError(
                f"{path}: not a Serverless file that can be read: {_first_line(e)}"
            ) from e
        raise


def _resources(path: str, section: object, resolver: Resolver) -> dict[str, Resource]:
    out: dict[str, Resource] = {}
    if not isinstance(section, Mapping):
        return out
    for key, body in section.items():
        if not isinstance(body, Mapping):
            continue
        raw = body.get("Properties")
        raw_map = raw if isinstance(raw, Mapping) else {}
        properties = resolver.resolve(raw_map)
        out[str(key)] = Resource(
            str(key),
            str(body.get("Type", "")),
            Where(path, line_of_node(key), str(key)),
            properties if isinstance(properties, RMap) else RMap(),
            raw_map,
            "Condition" in body,
        )
    return out


def decode(path: str, text: str) -> Document | None:
    """The resolved service file, None when the file is not one (no ``service`` or no
    ``provider``). Raises `IacError` when it does not decode."""
    data = _load(path, text)
    if not isinstance(data, Mapping) or "service" not in data:
        return None
    if not isinstance(data.get("provider"), Mapping):
        return None
    resolved = Variables(data).resolve(data)
    if not isinstance(resolved, Mapping):
        return None
    section = resolved.get("resources")
    raw_resources = section.get("Resources") if isinstance(section, Mapping) else None
    names = (
        {str(k): v for k, v in raw_resources.items()} if isinstance(raw_resources, Mapping) else {}
    )
    resolver = Resolver({}, {}, names)
    root = resolver.resolve(resolved)
    template = Template(
        path,
        TemplateKind.CLOUDFORMATION,
        _resources(path, raw_resources, resolver),
        resolver,
        RMap(),
        {},
    )
    return Document(path, root if isinstance(root, RMap) else RMap(), template)
