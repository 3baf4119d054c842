"""`donjon new NAME [--template http|event|lambda]`: a function directory to start from."""

from __future__ import annotations

import re
from pathlib import Path

import click

from donjon.cli.output import OutputFormat, echo_text, emit, output_option
from donjon.cli.templates import TEMPLATES
from donjon.manifest.model import NAME_RE

__all__ = ["new"]

_NAME = re.compile(NAME_RE)


@click.command()
@click.argument("name")
@click.option(
    "--template",
    type=click.Choice(sorted(TEMPLATES)),
    default="http",
    show_default=True,
    help="http: an HTTPS endpoint under /fn/; event: called with a JSON event; "
    "lambda: an AWS Lambda handler.",
)
@click.option(
    "--dir",
    "parent",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path(),
    help="Where to make the NAME directory (default: here).",
)
@output_option
def new(name: str, template: str, parent: Path, output: OutputFormat) -> None:
    """Make directory NAME with a manifest, a handler and a test that passes."""
    if not _NAME.fullmatch(name):
        raise click.BadParameter(
            "a function name is a lower-case letter, then up to 62 lower-case letters, digits or -",
            param_hint="NAME",
        )
    target = parent / name
    try:
        target.mkdir()
    except FileExistsError:
        raise click.BadParameter(
            f"{target} already exists; nothing written", param_hint="NAME"
        ) from None
    files = TEMPLATES[template]
    written = []
    for file_name, text in files.items():
        path = target / file_name
        # "x": never over anything that appeared since the check above.
        with path.open("x", encoding="utf-8") as f:
            f.write(text.format(name=name))
        written.append(str(path))

    def lines() -> None:
        echo_text(f"created {target} ({template} template):")
        for path in written:
            echo_text(f"  {path}")
        echo_text(f"test it:   cd {target} && python -m pytest")
        echo_text(f"deploy it: donjon deploy {target}")

    made = {"name": name, "template": template, "directory": str(target), "files": written}
    emit(output, made, lines)
