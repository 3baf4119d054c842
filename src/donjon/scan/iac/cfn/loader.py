"""`CfnFormat`: SAM and CloudFormation templates of a project read into `App`s.

Every ``.yaml``, ``.yml`` and ``.json`` file that mentions CloudFormation is decoded
(cfn-lint is imported only then); a file that is not a template is skipped
silently, one that claims to be one but does not decode or resolve is a note.
"""

from __future__ import annotations

from collections.abc import Mapping

from donjon.scan.iac.cfn.apis import build_apis
from donjon.scan.iac.cfn.functions import FUNCTION_TYPES, build_functions
from donjon.scan.iac.cfn.resolver import line_of_node
from donjon.scan.iac.cfn.resources import (
    build_buckets,
    build_log_groups,
    build_queues,
    build_user_pools,
)
from donjon.scan.iac.cfn.template import Template, decode, looks_like
from donjon.scan.iac.interface import IacError, Loaded, TemplateFormat
from donjon.scan.iac.model import App, Where
from donjon.scan.project import Project

__all__ = ["CfnFormat", "build_app", "load_text", "read_text"]

_MAX_LITERALS = 2000


def _is_intrinsic(key: object) -> bool:
    return key == "Ref" or (isinstance(key, str) and key.startswith("Fn::"))


def _literals(template: Template) -> tuple[tuple[Where, str, str], ...]:
    """Literal strings of the template a secret rule should see: parameter defaults and
    resource properties, outside function environments (those are in the model)."""
    out: list[tuple[Where, str, str]] = []

    def walk(node: object, where: Where, path: str) -> None:
        if len(out) >= _MAX_LITERALS:
            return
        if isinstance(node, Mapping):
            if len(node) == 1 and _is_intrinsic(next(iter(node))):
                return  # names of parameters, resources and maps: not literals
            for key, value in node.items():
                child = f"{path}.{key}" if path else str(key)
                if child.endswith("Environment.Variables") and where.resource in functions:
                    continue
                if isinstance(value, str):
                    out.append((where.at(line_of_node(key)), child, value))
                else:
                    walk(value, where, child)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    out.append((where.at(line_of_node(item)), f"{path}[{index}]", item))
                else:
                    walk(item, where, f"{path}[{index}]")

    functions = {r.name for r in template.of_type(*FUNCTION_TYPES)}
    for resource in template.resources.values():
        walk(resource.raw, resource.where, "")
    for name, default in template.parameter_defaults.items():
        out.append((Where(template.path, default[0], name), "Default", default[1]))
    return tuple(out[:_MAX_LITERALS])


def build_app(template: Template) -> App:
    """The model of one decoded template."""
    groups = build_log_groups(template)
    functions, implicit = build_functions(template, groups)
    return App(
        template.path,
        template.kind,
        functions=functions,
        buckets=build_buckets(template),
        queues=build_queues(template),
        apis=build_apis(template, implicit),
        log_groups=tuple(dict.fromkeys(groups.values())),
        user_pools=build_user_pools(template),
        literals=_literals(template),
    )


def _limits(template: Template) -> tuple[str, ...]:
    """What of this template the loader knows it does not read, as notes."""
    notes = [
        f"{template.path}: transform {name} is not applied; the template is read as written"
        for name in template.transforms
        if not name.startswith("AWS::Serverless") and name != "AWS::LanguageExtensions"
    ]
    notes.extend(
        f"{template.path}: {r.name} is a nested stack ({r.type}); its template is not read"
        for r in template.of_type("AWS::CloudFormation::Stack", "AWS::Serverless::Application")
    )
    return tuple(notes)


def read_text(path: str, text: str) -> tuple[App | None, tuple[str, ...]]:
    """The app of one file (None when it is not a template) and what of it is not read.
    Raises `IacError` when it looks like a template but cannot be read."""
    if not looks_like(path, text):
        return None, ()
    template = decode(path, text)
    if template is None:
        return None, ()
    try:
        return build_app(template), _limits(template)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as e:
        # A shape no rule of the loader expected: reported, never fatal to the scan.
        raise IacError(f"{path}: could not be read as a template ({type(e).__name__}: {e})") from e


def load_text(path: str, text: str) -> App | None:
    """The app of one file, None when it is not a template. Raises `IacError`."""
    return read_text(path, text)[0]


class CfnFormat(TemplateFormat):
    """SAM and CloudFormation, YAML (short-form intrinsics included) and JSON."""

    name = "cloudformation"

    def load(self, project: Project) -> Loaded:
        apps: list[App] = []
        notes: list[str] = []
        for source in project.files:
            try:
                app, limits = read_text(source.rel, source.text)
            except IacError as e:
                notes.append(e.message)
                continue
            notes.extend(limits)
            if app is not None:
                apps.append(app)
        return Loaded(tuple(apps), tuple(notes))
