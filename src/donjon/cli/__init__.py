"""The `donjon` command line. Commands are thin: each calls the API or a subsystem."""

from __future__ import annotations

import platform
import sys

import click

from donjon import __version__
from donjon.cli.admin import audit, key
from donjon.cli.alerts import alerts
from donjon.cli.audit_cmd import AUDIT_COMMANDS
from donjon.cli.deploy import deploy
from donjon.cli.functions import describe, invoke, ls, rm
from donjon.cli.issuers import issuer
from donjon.cli.logs import logs
from donjon.cli.new import new
from donjon.cli.node import doctor, init, serve, up
from donjon.cli.output import OutputFormat, echo_text, emit, output_option, printable
from donjon.cli.permissions import permissions
from donjon.cli.responses import function, throttle
from donjon.cli.roles import role
from donjon.cli.scan_cmd import scan_command
from donjon.cli.secrets import secret, vault
from donjon.cli.timeline import timeline
from donjon.cli.tls_cmd import tls
from donjon.errors import Error

__all__ = ["cli", "main"]


@click.group()
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, "--version", prog_name="donjon", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Donjon: a serverless platform, secure by default.

    Shell completion (click's): eval "$(_DONJON_COMPLETE=bash_source donjon)"
    in ~/.bashrc (zsh_source in ~/.zshrc; fish_source for fish).
    """
    ctx.obj = {"debug": debug}


@click.command()
@output_option
def version(output: OutputFormat) -> None:
    """Print Donjon's version (and the Python it runs on)."""
    info = {
        "version": __version__,
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
    }
    emit(
        output,
        info,
        lambda: echo_text(f"donjon {__version__} (python {info['python']}, {info['platform']})"),
    )


for command in (
    init,
    serve,
    up,
    doctor,
    new,
    deploy,
    invoke,
    ls,
    describe,
    logs,
    rm,
    key,
    role,
    audit,
    issuer,
    scan_command,
    version,
):
    cli.add_command(command)
for command in (secret, vault, permissions, alerts):
    cli.add_command(command)
cli.add_command(tls)
# The monitor's responses and the forensic timeline (cli/responses.py, cli/timeline.py).
cli.add_command(function)
cli.add_command(throttle)
audit.add_command(timeline)
for command in AUDIT_COMMANDS:
    audit.add_command(command)


def main() -> None:
    debug = "--debug" in sys.argv
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Error as e:
        if debug:
            raise
        # Messages may carry the server's words (a problem's detail, a scan report).
        click.echo(f"error: {printable(e.message, multiline=True)}", err=True)
        if e.hint:
            click.echo(f"hint: {printable(e.hint, multiline=True)}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
