"""SAM ``Globals``: the template-wide defaults of functions and APIs, merged into each
resource as SAM merges them before CloudFormation sees the template.

The resource's own value wins over the global one; mappings are merged key by key
(recursively, the resource's keys winning); lists are joined, the global entries
first; a value of another type, or an intrinsic function on either side, is the
resource's alone. The merge works on the decoded nodes, so every value keeps the
line it was written on (a value from ``Globals`` points at ``Globals``).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["GLOBAL_SECTIONS", "merge_globals"]

#: Which section of ``Globals`` applies to which resource type.
GLOBAL_SECTIONS = {
    "AWS::Serverless::Function": "Function",
    "AWS::Serverless::Api": "Api",
    "AWS::Serverless::HttpApi": "HttpApi",
    "AWS::Serverless::SimpleTable": "SimpleTable",
    "AWS::Serverless::StateMachine": "StateMachine",
    "AWS::Serverless::LayerVersion": "LayerVersion",
}


class _Merged(dict[object, object]):
    """A merged mapping, keeping the resource's own mark (its line)."""

    def __init__(self, start_mark: object) -> None:
        super().__init__()
        self.start_mark = start_mark


def _intrinsic(node: object) -> bool:
    if not isinstance(node, Mapping) or len(node) != 1:
        return False
    key = next(iter(node))
    return key == "Ref" or (isinstance(key, str) and key.startswith("Fn::"))


def _merge(global_value: object, local_value: object) -> object:
    if isinstance(global_value, Mapping) and isinstance(local_value, Mapping):
        if _intrinsic(global_value) or _intrinsic(local_value):
            return local_value
        out = _Merged(getattr(local_value, "start_mark", None))
        for key, value in global_value.items():
            out[key] = value
        for key, value in local_value.items():
            if key in global_value:
                # Keep the resource's key (its line) in place of the global one.
                del out[key]
                out[key] = _merge(global_value[key], value)
            else:
                out[key] = value
        return out
    if isinstance(global_value, list) and isinstance(local_value, list):
        return [*global_value, *local_value]
    return local_value


def merge_globals(resource_type: str, properties: object, globals_: object) -> object:
    """The resource's properties with the matching section of ``Globals`` merged in."""
    section = GLOBAL_SECTIONS.get(resource_type)
    if section is None or not isinstance(globals_, Mapping):
        return properties
    defaults = globals_.get(section)
    if not isinstance(defaults, Mapping):
        return properties
    if properties is None:
        properties = {}
    return _merge(defaults, properties)
