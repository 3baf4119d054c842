"""The `donjon` command line. Commands are thin: each calls the API or a subsystem."""

from __future__ import annotations

import platform
import sys

import click

from donjon import __version__
from donjon.cli.lazy import LazyCommand, LazyGroup
from donjon.cli.output import OutputFormat, echo_text, emit, output_option, printable
from donjon.errors import Error

__all__ = ["COMMANDS", "cli", "main"]


#: Every command but `version`, imported when it is used (cli/lazy.py); each summary is
#: the first sentence of the command's help (tests/cli/test_lazy.py checks them).
COMMANDS = {
    "alerts": LazyCommand(
        "donjon.cli.alerts:alerts",
        "List the monitor's alerts, oldest first (each with its audit seq and evidence).",
    ),
    "audit": LazyCommand(
        "donjon.cli.audit_group:audit",
        "Read and check the audit log.",
    ),
    "deploy": LazyCommand(
        "donjon.cli.deploy:deploy",
        "Validate, vendor, scan and deploy the function bundles in DIRECTORIES (or -f STACK).",
    ),
    "describe": LazyCommand(
        "donjon.cli.functions:describe",
        "Show function NAME: version, digest, who deployed it, limits, triggers, grants.",
    ),
    "dlq": LazyCommand(
        "donjon.cli.dlq:dlq",
        "The dead-letter queue: async invocations whose attempts are used up.",
    ),
    "doctor": LazyCommand(
        "donjon.cli.node:doctor",
        "List every control in force on this host, and each missing one with its fix.",
    ),
    "function": LazyCommand(
        "donjon.cli.responses:function",
        "Quarantine and release functions (the monitor's automatic responses).",
    ),
    "init": LazyCommand(
        "donjon.cli.node:init",
        "Create the data dir, master key, TLS certificate, database and first admin key.",
    ),
    "invoke": LazyCommand(
        "donjon.cli.functions:invoke",
        "Invoke function NAME with an event and print its result.",
    ),
    "issuer": LazyCommand(
        "donjon.cli.issuers:issuer",
        "Manage trusted JWT issuers (OIDC identity providers).",
    ),
    "key": LazyCommand(
        "donjon.cli.admin:key",
        "Manage API keys.",
    ),
    "logs": LazyCommand(
        "donjon.cli.logs:logs",
        "Show function NAME's invocations: START, stdout/stderr in order, END, REPORT.",
    ),
    "ls": LazyCommand(
        "donjon.cli.functions:ls",
        "List deployed functions.",
    ),
    "new": LazyCommand(
        "donjon.cli.new:new",
        "Make directory NAME with a manifest, a handler and a test that passes.",
    ),
    "permissions": LazyCommand(
        "donjon.cli.permissions:permissions",
        "A function's granted permissions (donjon.yaml `permissions`).",
    ),
    "rm": LazyCommand(
        "donjon.cli.functions:rm",
        "Remove function NAME (its versions stay in the audit trail).",
    ),
    "provenance": LazyCommand(
        "donjon.cli.sbom_cmd:provenance",
        "Print the signed provenance of function NAME (a DSSE envelope; default: the version "
        "serving).",
    ),
    "quota": LazyCommand(
        "donjon.cli.quotas:quota",
        "Daily quotas per key, role or function (denial of wallet), reset at UTC midnight.",
    ),
    "role": LazyCommand(
        "donjon.cli.roles:role",
        "Manage roles: the built-in ones and custom role documents.",
    ),
    "sbom": LazyCommand(
        "donjon.cli.sbom_cmd:sbom",
        "Print the CycloneDX SBOM of function NAME (default: the version serving).",
    ),
    "scan": LazyCommand(
        "donjon.cli.scan_cmd:scan_command",
        "Scan PATH (a function bundle or any Python project) for insecure code, hard-coded "
        "secrets, vulnerable dependencies and over-broad manifests.",
    ),
    "secret": LazyCommand(
        "donjon.cli.secrets:secret",
        "Manage vault secrets (values are write-only: nothing ever shows them).",
    ),
    "serve": LazyCommand(
        "donjon.cli.node:serve",
        "Serve the gateway (HTTPS) and run functions in sandboxes.",
    ),
    "throttle": LazyCommand(
        "donjon.cli.responses:throttle",
        "The throttles the monitor set on principals, sources and functions.",
    ),
    "tls": LazyCommand(
        "donjon.cli.tls_cmd:tls",
        "The node's own TLS certificate.",
    ),
    "up": LazyCommand(
        "donjon.cli.node:up",
        "Init if needed, serve, deploy the examples and print how to call them.",
    ),
    "verify-provenance": LazyCommand(
        "donjon.cli.sbom_cmd:verify_provenance_command",
        "Check a provenance statement offline: its signature, payload type and subject.",
    ),
    "vault": LazyCommand(
        "donjon.cli.secrets:vault",
        "The vault's keys.",
    ),
}


@click.group(cls=LazyGroup, lazy=COMMANDS)
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


cli.add_command(version)


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
    except Exception as e:
        # An answer of a shape no command expects (a field missing, of another type: a
        # node of another version, or something else at DONJON_URL) or a bug: one line, as
        # every error, and the traceback only with --debug. Its words may be the server's.
        if debug:
            raise
        click.echo(f"error: {type(e).__name__}: {printable(e)}", err=True)
        click.echo(
            "hint: an answer from DONJON_URL this CLI cannot read (another version, or not "
            "a Donjon node), or a bug: `donjon --debug ...` shows where it failed",
            err=True,
        )
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
