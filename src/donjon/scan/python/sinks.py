"""Injection sinks: command, SQL, deserialization and XML entity rules.

Code injection, SQL through other database APIs, request forgery and path traversal
have modules of their own (sinks_code.py, sinks_sql.py, sinks_net.py, sinks_files.py);
`check_call` runs them.

Grading is by what reaches the sink: event data (taint) -> high confidence, with
its path; a value built only from literals -> nothing (a constant command is not an
injection); anything else -> a lower-confidence finding, because Donjon could not
see where it came from.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from donjon.scan.model import Confidence, Severity
from donjon.scan.python.argv import argv_use, runs_code
from donjon.scan.python.callbacks import handed_calls
from donjon.scan.python.hits import CallSite
from donjon.scan.python.misuse import check_misuse
from donjon.scan.python.sinks_code import CODE_SINKS, check_code_method
from donjon.scan.python.sinks_files import check_path
from donjon.scan.python.sinks_net import check_request
from donjon.scan.python.sinks_sql import SQL_CALLS, check_sql_api, grade_sql
from donjon.scan.python.values import Value, join_all

__all__ = ["SINK_NAMES", "check_call"]

_HIGH, _MEDIUM, _LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW

_SHELL_CALLS = frozenset(
    {
        "os.system",
        "os.popen",
        "os.popen2",
        "os.popen3",
        "os.popen4",
        "popen2.popen2",
        "popen2.popen3",
        "popen2.popen4",
        "commands.getoutput",
        "commands.getstatusoutput",
        "subprocess.getoutput",
        "subprocess.getstatusoutput",
        "asyncio.create_subprocess_shell",
    }
)
_SUBPROCESS = frozenset(
    {
        "subprocess.run",
        "subprocess.call",
        "subprocess.check_call",
        "subprocess.check_output",
        "subprocess.Popen",
        "pty.spawn",
    }
)
_EXEC_PROGRAM_ARG = {
    **{
        f"os.{n}": 0
        for n in (
            "execl",
            "execle",
            "execlp",
            "execlpe",
            "execv",
            "execve",
            "execvp",
            "execvpe",
            "posix_spawn",
            "posix_spawnp",
        )
    },
    **{
        f"os.{n}": 1
        for n in (
            "spawnl",
            "spawnle",
            "spawnlp",
            "spawnlpe",
            "spawnv",
            "spawnve",
            "spawnvp",
            "spawnvpe",
        )
    },
    "asyncio.create_subprocess_exec": 0,
}
_SQL_METHODS = frozenset({"execute", "executemany", "executescript", "raw", "mogrify"})
#: Deserializers of data passed in memory (a literal payload is harmless).
_DESER_DATA = frozenset(
    {
        "pickle.loads",
        "cPickle.loads",
        "_pickle.loads",
        "dill.loads",
        "marshal.loads",
        "jsonpickle.decode",
        "jsonpickle.loads",
        "jsonpickle.unpickler.decode",
    }
)
#: Deserializers that read a file or stream (the argument names it; the data is unseen).
_DESER_FILE = frozenset(
    {
        "pickle.load",
        "cPickle.load",
        "_pickle.load",
        "dill.load",
        "marshal.load",
        "pickle.Unpickler",
        "shelve.open",
        "shelve.DbfilenameShelf",
        "pandas.read_pickle",
    }
)
_YAML_LOADS = frozenset({"yaml.load", "yaml.load_all"})
_YAML_UNSAFE = frozenset(
    {"yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all"}
)
_SAFE_LOADERS = ("SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader")
_XML_MODULES = (
    "xml.etree.ElementTree",
    "xml.etree.cElementTree",
    "xml.dom.minidom",
    "xml.dom.pulldom",
    "xml.sax",
    "xml.dom.expatbuilder",
    "lxml.etree",
)
_XML_DATA = frozenset(
    f"{m}.{f}"
    for m in _XML_MODULES
    for f in ("parse", "fromstring", "XML", "iterparse", "parseString", "fromstringlist")
)
_XML_PARSERS = frozenset(
    {
        "xml.etree.ElementTree.XMLParser",
        "xml.etree.cElementTree.XMLParser",
        "xml.sax.make_parser",
        "xml.sax.expatreader.create_parser",
        "xml.dom.expatbuilder.ExpatBuilder",
    }
)


def _grade(
    site: CallSite,
    rule_id: str,
    value: Value | None,
    what: str,
    *,
    unknown: Confidence | None,
    severity: Severity | None = None,
) -> None:
    if value is None or value.const:
        return
    if value.taint is not None:
        site.report(
            rule_id,
            _HIGH,
            f"event data reaches {what}",
            value=value,
            severity=severity,
            sink_note=f"reaches {what}",
        )
    elif unknown is not None:
        site.report(rule_id, unknown, f"{what} gets a value Donjon could not trace to a constant")


def _command(site: CallSite, qual: str) -> None:
    if qual in _SHELL_CALLS:
        _grade(
            site,
            "DJ-PY-001",
            site.arg(0, "cmd") or site.arg(0, "command"),
            f"{qual}() (runs a shell)",
            unknown=_LOW,
        )
        return
    elts = _argv_nodes(site, qual)
    if elts is not None and _argv(site, qual, elts):
        return
    if qual in _EXEC_PROGRAM_ARG:
        program = site.arg(_EXEC_PROGRAM_ARG[qual], "path") or site.arg(0, "program")
        _grade(site, "DJ-PY-001", program, f"the program run by {qual}()", unknown=None)
        return
    command = site.arg(0, "args")
    if command is None:
        return
    shell = site.keyword_node("shell")
    if shell is None and "**" in site.kwargs and command.head is None:
        # run(cmd, **options): `options` may hold shell=True.
        shell = next(kw.value for kw in site.node.keywords if kw.arg is None)
    if shell is not None and not (isinstance(shell, ast.Constant) and not shell.value):
        _grade(site, "DJ-PY-001", command, f"{qual}(shell=True)", unknown=_LOW)
    elif command.head is not None:
        _grade(site, "DJ-PY-001", command.head, f"the program {qual}() runs", unknown=None)
        head = command.head.prefix if command.head.const else None
        if elts is None and command.taint is not None and head is not None and runs_code(head):
            # ``argv = ["sh", "-c", cmd]`` then run(argv): the list is not written out
            # at the call, so its script cannot be told from the script's arguments.
            site.report(
                "DJ-PY-001",
                _LOW,
                f"event data is in the argv of {head}, run by {qual}(), built where Donjon "
                "cannot tell a script from its arguments",
            )
    elif command.taint is not None:
        confidence = _HIGH if command.built else _MEDIUM
        site.report(
            "DJ-PY-001",
            confidence,
            f"event data reaches the command of {qual}() and may choose the program",
            value=command,
            sink_note=f"reaches {qual}()",
        )


def _argv(site: CallSite, qual: str, elts: list[ast.expr]) -> bool:
    """An argv list that runs one of its items beyond the first as a script or program
    (``["/bin/sh", "-c", script]``, behind ``sudo``/``timeout``/``env``..., ``python3 -c``,
    ``find -exec``, ``ssh host words``; python/argv.py): that item is graded as
    ``os.system(script)`` or as the program. True when the argv is such a list."""
    use = argv_use(elts)
    if use is None or site.evaluate is None:
        return False
    evaluate = site.evaluate
    if use.to_end:
        value = join_all([evaluate(e) for e in elts[use.index :]])
    else:
        value = evaluate(elts[use.index])
    _grade(site, "DJ-PY-001", value, f"{use.what} ({qual}())", unknown=_LOW if use.script else None)
    return True


def _argv_nodes(site: CallSite, qual: str) -> list[ast.expr] | None:
    """The argv of a call, as nodes, when it is written out: a list given to subprocess
    or os.exec*v/spawn*v/posix_spawn, or the arguments of os.exec*l/spawn*l and
    asyncio.create_subprocess_exec."""
    args = site.node.args
    if qual in _EXEC_PROGRAM_ARG:
        start = _EXEC_PROGRAM_ARG[qual] + (0 if qual == "asyncio.create_subprocess_exec" else 1)
        name = qual.rsplit(".", 1)[-1]
        if name.startswith("posix_spawn") or "v" in name:  # execv, spawnvpe, posix_spawn
            node = args[start] if start < len(args) else None
        else:
            end = len(args) - 1 if name.endswith("e") else len(args)
            return [a for a in args[start:end] if not isinstance(a, ast.Starred)] or None
    else:
        node = site.arg_node(0, "args")
    return list(node.elts) if isinstance(node, ast.List | ast.Tuple) else None


def _sql(site: CallSite, what: str) -> None:
    grade_sql(site, site.arg(0, "sql") or site.arg(0, "query") or site.arg(0, "statement"), what)


def _deserialize(site: CallSite, qual: str) -> None:
    what = f"{qual}()"
    data = (
        site.arg(0, "data")
        or site.arg(0, "file")
        or site.arg(0, "filename")
        or (site.arg(0, "stream"))
    )
    if qual in _YAML_LOADS:
        loader = site.arg_node(1, "Loader")
        if loader is not None:
            name = site.imports.qualname(loader)
            if name is None or name.endswith(_SAFE_LOADERS):
                return
        what = f"{qual}() without a safe Loader"
    elif (qual == "numpy.load" and not site.keyword_is("allow_pickle", True)) or (
        qual == "torch.load" and site.keyword_is("weights_only", True)
    ):
        return
    if data is None:
        return
    if data.taint is not None:
        site.report(
            "DJ-PY-004",
            _HIGH,
            f"event data reaches {what}",
            value=data,
            severity=Severity.HIGH,
            sink_note=f"reaches {what}",
        )
    elif not (data.const and qual in _DESER_DATA):
        site.report("DJ-PY-004", _MEDIUM, f"{what} can run code hidden in the data it reads")


def _xml(site: CallSite, qual: str) -> None:
    if qual.startswith("lxml.") and site.keyword_node("parser") is not None:
        return
    if qual in _XML_PARSERS:
        site.report("DJ-PY-005", _MEDIUM, f"{qual}() builds a parser that resolves entities")
        return
    data = site.arg(0, "source") or site.arg(0, "text") or site.arg(0, "string")
    if data is None or data.const:
        return
    if data.taint is not None:
        site.report(
            "DJ-PY-005",
            _HIGH,
            f"event data is parsed by {qual}()",
            value=data,
            severity=Severity.HIGH,
            sink_note=f"reaches {qual}()",
        )
    else:
        site.report("DJ-PY-005", _MEDIUM, f"{qual}() parses XML without defusedxml")


def _xml_features(site: CallSite) -> None:
    node = site.arg_node(0)
    feature = site.imports.qualname(node) if node is not None else None
    value = site.arg_node(1)
    if (feature or "").endswith("feature_external_ges") and getattr(value, "value", None) is True:
        site.report("DJ-PY-005", _HIGH, "the XML parser is told to fetch external entities")


def _lxml_parser(site: CallSite) -> None:
    if site.keyword_is("resolve_entities", True) or site.keyword_is("no_network", False):
        site.report("DJ-PY-005", _HIGH, "lxml parser configured to resolve external entities")


_BY_QUAL: dict[str, Callable[[CallSite, str], None]] = {
    **dict.fromkeys(_SHELL_CALLS | _SUBPROCESS | _EXEC_PROGRAM_ARG.keys(), _command),
    **CODE_SINKS,
    **dict.fromkeys(SQL_CALLS, lambda site, qual: _sql(site, f"{qual}()")),
    **dict.fromkeys(
        _DESER_DATA | _DESER_FILE | _YAML_LOADS | _YAML_UNSAFE | {"numpy.load", "torch.load"},
        _deserialize,
    ),
    **dict.fromkeys(_XML_DATA | _XML_PARSERS, _xml),
    "lxml.etree.XMLParser": lambda site, _: _lxml_parser(site),
}

#: Every qualified name a sink rule of this module checks (refs.py grades lookups by it).
SINK_NAMES = frozenset(_BY_QUAL)


def check_call(site: CallSite) -> None:
    """Run every sink rule that applies to this call."""
    qual = site.qual or ""
    handler = _BY_QUAL.get(qual)
    if handler is not None:
        handler(site, qual)
    elif site.method in _SQL_METHODS:
        _sql(site, f".{site.method}()")
    elif site.method == "setFeature":
        _xml_features(site)
    else:
        check_sql_api(site)
    check_code_method(site)
    check_request(site, qual)
    check_path(site, qual)
    check_misuse(site, qual)
    for call in handed_calls(site):  # map(os.system, commands): checked as os.system(...)
        check_call(call)
