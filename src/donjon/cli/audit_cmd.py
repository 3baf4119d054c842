"""donjon audit prove/consistency/checkpoints/export/tail (the API) and check-proof (offline).

`check-proof` reads no settings and calls no node: it needs only the proof (or
export) file and the verifier key, so it runs on any machine with Donjon's
wheel installed. It exits 0 when the file holds, 1 with the reason when not.
"""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from donjon import boundedjson
from donjon.cli.client import MAX_PAGE_BYTES, AnswerCut, ApiClient
from donjon.cli.files import InputFileError, key_text
from donjon.cli.output import (
    OutputFormat,
    echo_json,
    echo_text,
    emit,
    output_option,
    printable_json,
    when,
)
from donjon.config import load_settings

__all__ = ["AUDIT_COMMANDS", "read_tail"]

#: What one GET /v1/audit page holds at most (gateway/audit_api.py MAX_PAGE).
PAGE = 10_000


def _write(document: Any, out: str | None, output: OutputFormat, summary: str) -> None:
    """The proof to stdout (the summary to stderr, in table form), or to the file `out`."""
    if out is None:
        echo_json(document)
        if output is OutputFormat.TABLE:
            echo_text(summary, err=True)
        return
    Path(out).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    emit(output, {"file": out, "summary": summary}, lambda: echo_text(f"wrote {out}: {summary}"))


_OUT = click.option("-o", "--out", "out", default=None, help="Write the proof to this file.")


@click.command("prove")
@click.argument("seq", type=click.IntRange(min=1))
@click.option(
    "--size",
    type=click.IntRange(min=1),
    default=None,
    help="Prove against this checkpoint (default: the newest).",
)
@_OUT
@output_option
def prove(seq: int, size: int | None, out: str | None, output: OutputFormat) -> None:
    """Print an inclusion proof of record SEQ against a signed checkpoint."""
    params: dict[str, int] = {"seq": seq}
    if size is not None:
        params["size"] = size
    doc = ApiClient(load_settings()).json("GET", "/v1/audit/proof", params=params)
    summary = (
        f"inclusion proof of record {seq} against checkpoint {doc['tree_size']} "
        f"({len(doc['path'])} hashes)"
    )
    _write(doc, out, output, summary)


@click.command("consistency")
@click.argument("old", type=click.IntRange(min=0))
@click.argument("new", type=click.IntRange(min=0))
@_OUT
@output_option
def consistency(old: int, new: int, out: str | None, output: OutputFormat) -> None:
    """Print a proof that checkpoint NEW extends checkpoint OLD (two checkpoint sizes)."""
    params = {"old": old, "new": new}
    doc = ApiClient(load_settings()).json("GET", "/v1/audit/consistency", params=params)
    summary = f"consistency proof from checkpoint {old} to {new} ({len(doc['path'])} hashes)"
    _write(doc, out, output, summary)


@click.command("checkpoints")
@click.option("-n", "count", type=click.IntRange(1, PAGE), default=20, show_default=True)
@output_option
def checkpoints(count: int, output: OutputFormat) -> None:
    """List the newest signed checkpoints (their sizes are what proofs name)."""
    rows = ApiClient(load_settings()).json("GET", "/v1/audit/checkpoints", params={"n": count})

    def lines() -> None:
        for r in rows:
            echo_text(f"{r['size']:>9} {when(r['ts'])} {r['root']}")

    emit(output, rows, lines)


class _TerminalText:
    """Bytes from outside, written to the terminal as printable text (split characters
    are decoded whole, across chunks)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(self, chunk: bytes) -> None:
        sys.stdout.write(printable_json(self._decoder.decode(chunk)))


@click.command("export")
@click.option(
    "--since",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="The first record's seq.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "syslog"]), default="jsonl", show_default=True
)
@click.option("-o", "--out", "out", default=None, help="Write to this file (default: stdout).")
@output_option
def export(since: int, fmt: str, out: str | None, output: OutputFormat) -> None:
    """Export records SINCE..the newest checkpoint, with the checkpoints covering them.

    The export goes to stdout (or -o FILE); what was written is summed up on
    stderr (or, with -o, on stdout). On a terminal, control characters are shown
    as escapes (a file or a pipe gets the bytes as the node sent them).
    """
    # A person reads it: nothing of the server's may drive the terminal.
    shown = _TerminalText() if out is None and sys.stdout.isatty() else None
    client = ApiClient(load_settings(), timeout=600.0)
    params: dict[str, Any] = {"since": since, "format": fmt}
    sink: IO[bytes] = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115 - stdout is not ours to close; closed below
    first, lines = b"", 0
    try:
        with client.stream("GET", "/v1/audit/export", params=params) as response:
            for chunk in response.iter_bytes():
                if len(first) < 65536 and b"\n" not in first:
                    first += chunk[:65536]
                lines += chunk.count(b"\n")
                if shown is not None:
                    shown.write(chunk)
                else:
                    sink.write(chunk)
    except AnswerCut as e:
        where = out or "what was written"
        raise AnswerCut(
            f"the export was cut short after {lines} lines: {where} is incomplete ({e.message})",
            hint="the node ends an export it cannot finish (a checkpoint row edited: run "
            "`donjon audit verify` there); `donjon audit check-proof` refuses the file",
        ) from e
    finally:
        if out:
            sink.close()
        else:
            sys.stdout.flush()
            sink.flush()
        client.close()
    from donjon.audit.export import json_of_line  # the audit package (SQLAlchemy): only here

    header = json_of_line(first.split(b"\n", 1)[0].decode(), 1) if first else {}
    done = {
        "file": out,
        "lines": lines,
        "since": header.get("since"),
        "until": header.get("until"),
    }
    text = (
        f"exported records {done['since']}..{done['until']} and their checkpoints "
        f"({lines} lines){f' to {out}' if out else ''}"
    )
    if out:
        emit(output, done, lambda: echo_text(text))
    elif output is OutputFormat.TABLE:
        echo_text(text, err=True)


@click.command("tail")
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many records (any number: read in pages).",
)
@output_option
def tail(count: int, output: OutputFormat) -> None:
    """Show the newest audit records, oldest first."""
    client = ApiClient(load_settings(), max_answer_bytes=MAX_PAGE_BYTES)
    try:
        records = read_tail(client, count)
    finally:
        client.close()
    emit(output, records, lambda: _audit_lines(records))


def read_tail(client: ApiClient, count: int, page: int = PAGE) -> list[dict[str, Any]]:
    """The newest `count` records, oldest first, in pages of at most `page` (the API's cap)
    walking back with `before`: each page ends just before the previous one's first seq.
    A key that reads some functions' records only gets short pages that say where to go
    on (`x-donjon-next-before`): followed, as far as the start of the log."""
    pages: list[list[dict[str, Any]]] = []
    before: int | None = None
    left = count
    while left > 0:
        n = min(left, page)
        params: dict[str, int] = {"n": n}
        if before is not None:
            params["before"] = before
        response = client.request("GET", "/v1/audit", params=params)
        got: list[dict[str, Any]] = response.json()
        if got:
            pages.append(got)
            left -= len(got)
            before = int(got[0]["seq"])
        go_on = response.headers.get("x-donjon-next-before", "")
        if go_on.isascii() and go_on.isdigit() and (before is None or int(go_on) <= before):
            before = int(go_on)  # a scoped page that ran out of reading: go on from there
        elif len(got) < n or before == 1:
            break  # the start of the log
    return [r for chunk in reversed(pages) for r in chunk]


def _audit_lines(records: list[dict[str, Any]]) -> None:
    for r in records:
        # Every field was written by others (a request path, a key name): escaped.
        detail = " ".join(f"{k}={v}" for k, v in sorted(r["detail"].items()))
        echo_text(
            f"{r['seq']:>7} {when(r['ts'])} {r['actor']:<22} {r['action']:<16} "
            f"{r['target']:<24} {r['outcome']:<10} {detail}"
        )


# -- offline ---------------------------------------------------------------------


def _read_key(value: str) -> Any:
    from donjon.audit.checkpoint import VerifierKey

    return VerifierKey.parse(key_text(value).strip())


#: The most a proof document (or an export's first line) holds: a path of MAX_PATH hashes
#: and two signed notes are some kilobytes.
MAX_PROOF_CHARS = 1 << 20
#: The most one line of an export holds (one record, or a checkpoint).
MAX_EXPORT_LINE_CHARS = 64 << 20


def _lines(handle: IO[str], first: str) -> Iterator[str]:
    """An export's lines, each read to a bound: a line that never ends is refused."""
    from donjon.audit.proofs import ProofInvalid

    line, number = first, 1
    while line:
        if len(line) > MAX_EXPORT_LINE_CHARS:
            raise ProofInvalid(
                f"line {number} of the export is over {MAX_EXPORT_LINE_CHARS} characters: "
                "not a record",
                hint="check the file `donjon audit export` wrote",
            )
        yield line
        line, number = handle.readline(MAX_EXPORT_LINE_CHARS + 1), number + 1


@click.command("check-proof")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--key",
    "key",
    required=True,
    help="The verifier key (`donjon audit pubkey`), or a file holding it.",
)
@output_option
def check_proof(file: str, key: str, output: OutputFormat) -> None:
    """Check a proof or an export offline; exit 0 if valid, 1 (with the reason) if not."""
    from donjon.audit.checkpoint import CheckpointError
    from donjon.audit.export import check_export
    from donjon.audit.proofs import ProofInvalid, check_document

    try:
        verifier = _read_key(key)
    except (OSError, CheckpointError, InputFileError) as e:
        raise click.BadParameter(
            f"not a verifier key or a file holding one: {getattr(e, 'message', e)}",
            param_hint="--key",
        ) from e
    handle: IO[str] = sys.stdin if file == "-" else open(file, encoding="utf-8")  # noqa: SIM115 - stdin is not ours to close; closed below
    try:
        first = handle.readline(MAX_PROOF_CHARS + 1)
        try:
            head = boundedjson.loads(first) if first.strip() else None
        except (ValueError, boundedjson.JSONTooDeep):
            head = None
        if first.startswith("<") or (isinstance(head, dict) and head.get("type") == "header"):
            checked = check_export(_lines(handle, first), verifier)
        else:
            text = first + handle.read(MAX_PROOF_CHARS + 1 - len(first))
            if len(text) > MAX_PROOF_CHARS:
                raise ProofInvalid(
                    f"the file is over {MAX_PROOF_CHARS} characters: not a proof",
                    hint="check the file `donjon audit prove` or `consistency` wrote",
                )
            try:
                doc = boundedjson.loads(text)
            except (ValueError, boundedjson.JSONTooDeep) as e:
                raise ProofInvalid(
                    "the file is neither a proof (JSON) nor an export (JSON lines)",
                    hint="check the file `donjon audit prove`, `consistency` or `export` wrote",
                ) from e
            checked = check_document(doc, verifier)
    except (ProofInvalid, UnicodeDecodeError) as e:
        reason = e.message if isinstance(e, ProofInvalid) else f"the file is not text: {e}"
        emit(
            output,
            {"valid": False, "reason": reason},
            lambda: echo_text(f"INVALID: {reason}", err=True),
        )
        raise SystemExit(1) from e
    finally:
        if file != "-":
            handle.close()
    emit(
        output,
        {"valid": True, "kind": checked.kind, "summary": checked.summary},
        lambda: echo_text(f"valid {checked.kind}: {checked.summary}"),
    )


AUDIT_COMMANDS = (prove, consistency, checkpoints, check_proof, export, tail)
