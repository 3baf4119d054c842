"""What an argv list runs as a script or a program, beyond its first item.

``["/bin/sh", "-c", script]`` runs `script` as a command line; so do the same list
behind a wrapper program (``["sudo", "-u", "app", "bash", "-c", script]``,
``["timeout", "5", "sh", "-c", script]``, ``["env", "A=1", "sh", "-c", script]``,
``["docker", "exec", name, "sh", "-c", script]``) and other interpreters given code
inline (``python3 -c``, ``perl -e``, ``node -e``, ``ruby -e``, ``php -r``...).
``["find", ".", "-exec", program, ";"]`` runs `program`, and ``["ssh", host, words...]``
hands the words to a shell on the remote host. Only constant items are read as
programs and flags, and only constant flags may stand between a shell and its script:
nothing the analysis cannot read is taken for a flag.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

__all__ = ["ArgvUse", "argv_use", "runs_code"]

#: Shells: a flag holding ``c`` (``-c``, ``-ec``, ``-lc``) makes the next item a script.
SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "busybox", "su", "runuser"}
)
#: Interpreters that run code given inline, and the flags that give it.
_INLINE = {
    "python": ("-c",),
    "pypy": ("-c",),
    "perl": ("-e", "-E"),
    "ruby": ("-e",),
    "node": ("-e", "-p", "--eval", "--print"),
    "nodejs": ("-e", "-p", "--eval", "--print"),
    "php": ("-r",),
    "lua": ("-e",),
    "luajit": ("-e",),
    "Rscript": ("-e",),
    "osascript": ("-e",),
    "pwsh": ("-c", "-Command", "-command"),
    "powershell": ("-c", "-Command", "-command"),
}
#: Flags that take the next item as their value, per family of program.
_VALUED = {
    "shell": frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"}),
    "python": frozenset({"-W", "-X"}),
    "node": frozenset({"-r", "--require", "--import", "--loader"}),
    "perl": frozenset({"-I", "-M"}),
    "ruby": frozenset({"-I", "-r"}),
}
#: Programs whose positional arguments may come before the flag that gives a command.
_ANY_ORDER = frozenset({"su", "runuser"})
_VERSIONED = re.compile(r"^(python|pypy|perl|ruby|lua|php)[0-9.]*$")
#: Programs that run the program named further along their argv.
_WRAPPERS = frozenset(
    {
        "env",
        "sudo",
        "doas",
        "timeout",
        "nice",
        "nohup",
        "setsid",
        "stdbuf",
        "ionice",
        "taskset",
        "chrt",
        "xargs",
        "time",
        "chroot",
        "unshare",
        "nsenter",
        "flock",
        "firejail",
        "systemd-run",
        "docker",
        "podman",
        "kubectl",
        "exec",
        "command",
    }
)
#: find's actions whose next item is a program it runs.
_FIND_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})
#: ssh's options that take a value (the next item, when not attached).
_SSH_VALUED = frozenset("BbcDEeFIiJLlmOoPpQRSWw")


@dataclass(frozen=True)
class ArgvUse:
    """Items of an argv list that are run: the one at `index` as a script (`script`) or
    as a program, or, with `to_end`, all from `index` on as one command line."""

    index: int
    what: str
    script: bool
    to_end: bool = False


def _text(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _program(text: str) -> str:
    return text.rsplit("/", 1)[-1]


def _inline_flags(program: str) -> tuple[str, ...] | None:
    if program in _INLINE:
        return _INLINE[program]
    match = _VERSIONED.match(program)
    return _INLINE[match.group(1)] if match else None


def _gives_code(program: str, flag: str) -> bool:
    """Whether `flag` makes the next item code for `program` (a shell or interpreter):
    ``c`` in a shell's short flags (``-c``, ``-ec``, ``-lc``), an interpreter's own
    flags, or one of its one-letter flags last in a bundle (``python3 -Sc``, ``perl -we``)."""
    if program in SHELLS:
        return not flag.startswith("--") and "c" in flag[1:]
    flags = _inline_flags(program) or ()
    if flag in flags:
        return True
    letters = {f[1] for f in flags if len(f) == 2}
    return not flag.startswith("--") and len(flag) > 2 and flag[-1] in letters


def _family(program: str) -> str:
    if program in SHELLS:
        return "shell"
    match = _VERSIONED.match(program)
    return match.group(1) if match else program


def _script_after(elts: list[ast.expr], start: int) -> ArgvUse | None:
    """The script the shell or interpreter at `start` is given inline, if any: only
    constant flags (and the values of flags that take one) may come between them."""
    name = _text(elts[start]) or ""
    program = _program(name)
    valued = _VALUED.get(_family(program), frozenset())
    i = start + 1
    while i < len(elts) - 1:
        flag = _text(elts[i])
        if flag is None:
            return None
        if not flag.startswith(("-", "+")):
            if program in _ANY_ORDER:  # su user -c command
                i += 1
                continue
            return None
        if _gives_code(program, flag):
            return ArgvUse(i + 1, f"the script {name} {flag} runs", script=True)
        i += 2 if flag in valued else 1
    return None


def runs_code(text: str | None) -> bool:
    """Whether the program `text` names is a shell or an interpreter that takes code."""
    program = _program(text or "")
    return program in SHELLS or _inline_flags(program) is not None


def _ssh_command(elts: list[ast.expr]) -> ArgvUse | None:
    """The words after ssh's destination (constant options come before it; the
    destination itself may be anything)."""
    i = 1
    while i < len(elts):
        flag = _text(elts[i])
        if flag is None or not flag.startswith("-"):
            break
        i += 2 if len(flag) == 2 and flag[1] in _SSH_VALUED else 1
    if i + 1 >= len(elts):
        return None
    return ArgvUse(i + 1, "the remote command ssh runs", script=True, to_end=True)


def argv_use(elts: list[ast.expr]) -> ArgvUse | None:
    """The first item of `elts` (an argv list) run as a script or program beyond the
    first item; None when there is none or it cannot be read."""
    if not elts:
        return None
    head = _text(elts[0])
    if head is None:
        return None
    program = _program(head)
    if runs_code(head):
        return _script_after(elts, 0)
    if program == "ssh":
        return _ssh_command(elts)
    if program == "find":
        for i, elt in enumerate(elts[1:-1], start=1):
            if _text(elt) in _FIND_EXEC:
                found = _text(elts[i + 1])
                if found is None or not runs_code(found):
                    return ArgvUse(i + 1, f"the program find {_text(elt)} runs", script=False)
                return _script_after(elts, i + 1)
        return None
    if program not in _WRAPPERS:
        return None
    for i, elt in enumerate(elts[1:], start=1):
        if runs_code(_text(elt)):
            return _script_after(elts, i)
    return None
