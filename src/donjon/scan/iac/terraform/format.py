"""`TerraformFormat`: every directory of ``.tf`` files of a project read as one module
into one `App` (AWS, Azure and Google resources together). Files in Terraform's JSON
syntax (``*.tf.json``, ``*.tfvars.json``, `json_syntax.py`) are part of their
directory's module as the native ones are.

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
    from donjon.scan.project import Project

__all__ = ["TerraformFormat", "build_app"]

#: Terraform's working directory (``terraform init`` downloads modules and providers
#: there): third-party code, not the project's templates.
_WORKDIR = ".terraform"


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
        directories: dict[str, tuple[list[Block], list[Block], list[tuple[str, Block]]]] = {}
        notes: list[str] = []
        for source in project.files:
            if _WORKDIR in source.rel.split("/"):
                continue
            json_syntax = source.rel.endswith((".tf.json", ".tfvars.json"))
            if not json_syntax and not source.rel.endswith((".tf", ".tfvars")):
                continue
            directory = str(PurePosixPath(source.rel).parent).removeprefix(".")
            blocks, tfvars, overrides = directories.setdefault(directory, ([], [], []))
            try:
                if json_syntax:
                    parsed, unknown = parse_json_file(source.rel, source.text)
                    notes.extend(unknown)
                else:
                    parsed = parse_file(source.rel, source.text)
            except IacError as e:
                notes.append(f"{e.message}; the rest of its module is read without it")
                continue
            if source.rel.endswith((".tfvars", ".tfvars.json")):
                tfvars.extend(parsed)
            elif is_override(source.rel):
                overrides.extend((source.rel, block) for block in parsed)
            else:
                blocks.extend(parsed)
        apps = []
        for directory, (blocks, tfvars, overrides) in sorted(directories.items()):
            ordered = [block for _, block in sorted(overrides, key=lambda o: o[0])]
            try:
                merged, merges = apply_overrides(blocks, ordered)
                notes.extend(merges)
                if merged:
                    apps.append(build_app(Module(directory, merged, tfvars)))
            except RecursionError:
                notes.append(f"{directory or '.'}: Terraform module nested too deeply to read")
        return Loaded(tuple(apps), tuple(notes))
