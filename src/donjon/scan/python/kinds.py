"""What kind of object a call returns, where a sink rule needs to know it.

``session.get(url)`` is a request only when ``session`` is an HTTP client, and
``p.open()`` opens a file only when ``p`` is a path: the evaluator tags the values of
such calls with a `Value.kind`, carried through assignments, ``with ... as`` and
branches (a join keeps a kind both sides agree on). A path that went through
``os.path.realpath``/``abspath``/``normpath`` or ``Path.resolve()`` is *normalised*:
a prefix check on it is a containment check (python/sinks_files.py).

An object that a library function or a lookup made *from* event data
(``io.BytesIO(body)``, ``fs.get(file_id)``, ``db.find(key)``) is `OBJECT`: it
carries the event's taint (it may hold the data) but is not the text of a path, so
``send_file(io.BytesIO(...))`` does not choose a file. Text functions
(``urllib.parse.unquote``, ``os.path.*``, ``str``...), parsers (``json.loads``),
methods of event data itself (``name.strip()``), an object's getters called without
event data (``wrapped.get_header_value("host")``), subscripts and attributes keep
giving the data.
"""

from __future__ import annotations

from dataclasses import replace

from donjon.scan.python.hits import CallSite
from donjon.scan.python.imports import LOCAL
from donjon.scan.python.values import HOLDING_BUILTINS, Value

__all__ = [
    "CODE",
    "CODE_RUNNER",
    "HTTP",
    "NORMALISED",
    "OBJECT",
    "PATH",
    "PATH_KINDS",
    "RESOLVED_PATH",
    "names_one_component",
    "refine_result",
    "result_kind",
]

#: An HTTP client object (its .get/.post/.request... send requests).
HTTP = "http"
#: A pathlib path object (its .open/.read_text/.unlink... touch the file system).
PATH = "path"
#: A pathlib path after .resolve(): no "..", no symlinks left.
RESOLVED_PATH = "path-resolved"
#: A path string after os.path.realpath/abspath/normpath.
NORMALISED = "path-normalised"
PATH_KINDS = frozenset({PATH, RESOLVED_PATH})
#: Something a function or a lookup made from event data: not the data's text.
OBJECT = "object"
#: A code object made by compile() (python/sinks_code.py judges it where it is made).
CODE = "code"
#: An object whose methods run text as code (an interactive interpreter, a profiler).
CODE_RUNNER = "code-runner"
_CODE_RUNNERS = frozenset(
    {
        "code.InteractiveInterpreter",
        "code.InteractiveConsole",
        "cProfile.Profile",
        "profile.Profile",
        "pdb.Pdb",
        "bdb.Bdb",
        "trace.Trace",
    }
)

_HTTP_CLIENTS = frozenset(
    {
        "requests.Session",
        "requests.session",
        "requests.sessions.Session",
        "httpx.Client",
        "httpx.AsyncClient",
        "urllib3.PoolManager",
        "urllib3.ProxyManager",
        "urllib3.poolmanager.PoolManager",
        "urllib3.poolmanager.ProxyManager",
        "aiohttp.ClientSession",
        "aiohttp.client.ClientSession",
    }
)
_PATH_TYPES = frozenset(
    {
        "pathlib.Path",
        "pathlib.PurePath",
        "pathlib.PosixPath",
        "pathlib.PurePosixPath",
        "pathlib.WindowsPath",
        "pathlib.PureWindowsPath",
    }
)
_NORMALISERS = frozenset(
    {
        f"{module}.{name}"
        for module in ("os.path", "posixpath")
        for name in ("realpath", "abspath", "normpath")
    }
)
#: Path methods that return another path of the same file system.
_PATH_RESULTS = frozenset(
    {"joinpath", "with_name", "with_suffix", "with_stem", "expanduser", "absolute", "relative_to"}
)


#: Functions that leave one file-name component: its event data is `confined`.
_CONFINERS = frozenset({"os.path.basename", "posixpath.basename"})
_NAME_ATTRS = frozenset({"name", "stem", "suffix"})
#: Functions whose result is text made from their arguments, or a container of it
#: (a parsed body: ``json.loads(event["body"]).get("url")`` is the caller's text).
_TEXT_MODULES = (
    "urllib.parse.",
    "os.path.",
    "posixpath.",
    "string.",
    "textwrap.",
    "base64.",
    "json.",
    "simplejson.",
    "orjson.",
    "ujson.",
)
_TEXT_FUNCTIONS = HOLDING_BUILTINS | frozenset(
    {
        "bytearray",
        "min",
        "max",
        "copy.copy",
        "copy.deepcopy",
        "yaml.safe_load",
        "xmltodict.parse",
        "defusedxml.ElementTree.fromstring",
        "os.fspath",
        "os.fsdecode",
        "os.fsencode",
        "re.sub",
        "re.escape",
        "html.escape",
        "html.unescape",
        "unicodedata.normalize",
    }
)


def _made_object(site: CallSite) -> bool:
    """Whether `site` makes an object from event data rather than text (see the module doc).

    Only event data in the arguments makes one: a getter of an object that holds event
    data (``wrapped.get_query_string_value("url")``) gives the data back."""
    if not any(v.taint is not None for v in [*site.args, *site.kwargs.values()]):
        return False
    qual = site.qual or ""
    receiver = site.receiver
    if site.method is not None and receiver is not None and (not qual or qual.startswith(LOCAL)):
        if receiver.kind == OBJECT:
            return True
        # A method of a string (a literal's .format/.join, event text's .strip) makes text.
        return receiver.taint is None and not receiver.const and receiver.prefix is None
    return qual not in _TEXT_FUNCTIONS and not qual.startswith(_TEXT_MODULES)


def result_kind(site: CallSite) -> str | None:
    """The kind of object `site` returns, if a rule cares about it."""
    qual = site.qual or ""
    if qual in _HTTP_CLIENTS:
        return HTTP
    if qual in _PATH_TYPES:
        return PATH
    if qual in _NORMALISERS:
        return NORMALISED
    if qual in _CODE_RUNNERS:
        return CODE_RUNNER
    if qual in ("compile", "builtins.compile"):
        return CODE
    receiver = site.receiver.kind if site.receiver is not None else None
    if receiver in PATH_KINDS:
        if site.method == "resolve":
            return RESOLVED_PATH
        if site.method in _PATH_RESULTS:
            return PATH
    return OBJECT if _made_object(site) else None


def names_one_component(base: Value, attr: str) -> bool:
    """Whether ``base.attr`` is event data confined to one file-name component
    (``Path(key).name``: what basename gives for a string)."""
    return base.taint is not None and (
        base.confined or (base.kind in PATH_KINDS and attr in _NAME_ATTRS)
    )


def refine_result(site: CallSite, result: Value) -> Value:
    """`result` (what the evaluator made of a call to outside the module) with its kind,
    and confined when the call reduces event data to one file-name component."""
    kind = result_kind(site)
    if kind is not None:
        result = replace(result, kind=kind)
    if site.qual in _CONFINERS and result.taint is not None:
        result = replace(result, confined=True)
    return result
