"""`TerraformFormat`: every directory of ``.tf`` files of a project read as one module
into one `App` (AWS, Azure and Google resources together). Files in Terraform's JSON
syntax (``*.tf.json``, ``*.tfvars.json``, `json_syntax.py`) are part of their
directory's module as the native ones are.

OpenTofu's own files (``*.tofu``, ``*.tofu.json``) are part of the module too, as OpenTofu
reads it: a ``.tofu`` file takes the place of the ``.tf`` file of the same name
(``main.tofu`` in place of ``main.tf``; ``.tofu.json`` of ``.tf.json``), which OpenTofu
then does not read. Terraform reads no ``.tofu`` file, so a directory where a ``.tofu``
file stands in for a ``.tf`` one (a module written for both tools) is also read as
Terraform reads it, the ``.tf`` files alone: what either tool would apply is judged.

Override files (``override.tf``, ``*_override.tf`` and their ``.json`` forms) merge
into the blocks they name, after the rest, as Terraform merges them (`overrides.py`).

A file that does not parse is a note naming it and why; the rest of its directory is
still read (what the broken file declared is then missing, and the note says so).
Files under ``.terraform/`` (modules and providers ``terraform init`` downloaded) are
not the project's and are not read.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from donjon.scan.iac.interface import IacError, Loaded, TemplateFormat
from donjon.scan.iac.model import App, TemplateKind
from donjon.scan.iac.terraform.aws_lambda import lambda_functions, log_groups
from donjon.scan.iac.terraform.aws_resources import apis, buckets, queues, user_pools
from donjon.scan.iac.terraform.azure import azure_functions, storage
from donjon.scan.iac.terraform.gcp import gcp_functions, gcs_buckets
from donjon.scan.iac.terraform.json_syntax import parse_json_file
from donjon.scan.iac.terraform.literals import template_literals
from donjon.scan.iac.terraform.module import Module
from donjon.scan.iac.terraform.overrides import apply_overrides, is_override
from donjon.scan.iac.terraform.syntax import Block, parse_file

if TYPE_CHECKING:
    from donjon.scan.project import Project, SourceFile

__all__ = ["TerraformFormat", "build_app"]

#: Terraform's working directory (``terraform init`` downloads modules and providers
#: there): third-party code, not the project's templates.
_WORKDIR = ".terraform"
#: A module's files by their suffix (tfvars files are read by both tools).
_VARS = (".tfvars", ".tfvars.json")
_JSON = (".tf.json", ".tofu.json", ".tfvars.json")
_MODULE = (".tf", ".tofu", ".tf.json", ".tofu.json", *_VARS)
#: OpenTofu's suffixes and the Terraform suffix each replaces.
_TOFU = ((".tofu", ".tf"), (".tofu.json", ".tf.json"))
_OPENTOFU = (".tofu", ".tofu.json")


def build_app(module: Module) -> App:
    """The model of one module."""
    groups = {id(g): g for g in log_groups(module).values()}
    return App(
        module.directory or ".",
        TemplateKind.TERRAFORM,
        functions=lambda_functions(module) + azure_functions(module) + gcp_functions(module),
        buckets=buckets(module) + storage(module) + gcs_buckets(module),
        queues=queues(module),
        apis=apis(module),
        log_groups=tuple(groups.values()),
        user_pools=user_pools(module),
        literals=template_literals(module),
    )


class TerraformFormat(TemplateFormat):
    name = "terraform"

    def load(self, project: Project) -> Loaded:
        directories: dict[str, list[SourceFile]] = {}
        for source in project.files:
            if _WORKDIR in source.rel.split("/") or not source.rel.endswith(_MODULE):
                continue
            directory = str(PurePosixPath(source.rel).parent).removeprefix(".")
            directories.setdefault(directory, []).append(source)
        apps = []
        notes: list[str] = []
        for directory, files in sorted(directories.items()):
            shadowed = _shadowed([source.rel for source in files])
            readings = [[source for source in files if source.rel not in shadowed]]
            if shadowed:
                readings.append([source for source in files if not source.rel.endswith(_OPENTOFU)])
                notes.append(
                    f"{directory or '.'}: OpenTofu reads a .tofu file in place of "
                    f"{', '.join(sorted(shadowed))}; the module is judged as OpenTofu reads "
                    "it and as Terraform reads it (without the .tofu files)"
                )
            for read in readings:
                # Each reading parses its files anew: an override moves the lines of
                # what it brings in place, so two readings may not share the blocks.
                app = _module_app(directory, read, notes)
                if app is not None:
                    apps.append(app)
        return Loaded(tuple(apps), tuple(dict.fromkeys(notes)))


def _shadowed(files: list[str]) -> set[str]:
    """The ``.tf`` (``.tf.json``) files of one directory that OpenTofu does not read, a
    ``.tofu`` (``.tofu.json``) file of the same name standing in for each."""
    replaced = {
        rel.removesuffix(tofu) + tf for rel in files for tofu, tf in _TOFU if rel.endswith(tofu)
    }
    return replaced & set(files)


def _module_app(directory: str, files: list[SourceFile], notes: list[str]) -> App | None:
    """The `App` of one directory's files (None when they declare nothing)."""
    blocks: list[Block] = []
    tfvars: list[Block] = []
    overrides: list[tuple[str, Block]] = []
    for source in files:
        try:
            if source.rel.endswith(_JSON):
                parsed, unknown = parse_json_file(source.rel, source.text)
                notes.extend(unknown)
            else:
                parsed = parse_file(source.rel, source.text)
        except IacError as e:
            notes.append(f"{e.message}; the rest of its module is read without it")
            continue
        if source.rel.endswith(_VARS):
            tfvars.extend(parsed)
        elif is_override(source.rel):
            overrides.extend((source.rel, block) for block in parsed)
        else:
            blocks.extend(parsed)
    ordered = [block for _, block in sorted(overrides, key=lambda o: o[0])]
    try:
        merged, merges = apply_overrides(blocks, ordered)
        notes.extend(merges)
        return build_app(Module(directory, merged, tfvars)) if merged else None
    except RecursionError:
        notes.append(f"{directory or '.'}: Terraform module nested too deeply to read")
        return None
