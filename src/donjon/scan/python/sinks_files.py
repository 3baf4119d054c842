"""Path traversal (DJ-PY-012): event data choosing which local file is read or written.

Sinks are the paths given to ``open``/``io.open``, the ``os`` and ``shutil`` file
operations, pathlib paths (``Path(...)`` and ``base / name``: their ``.open()``,
``.read_text()``, ``.unlink()``...), Flask's ``send_file``, Starlette/FastAPI and
aiohttp's ``FileResponse``, and the local file of S3 transfers
(``s3.download_file(bucket, key, "/tmp/" + key)``). A path joined onto a constant
base (``os.path.join(BASE, name)``, ``"/tmp/" + key``) is still reported: ``..``
climbs out of it.

Sanitizers: ``os.path.basename`` (its result is `confined`: safe as a part of a path,
still event data anywhere else), werkzeug's ``secure_filename`` (a sanitizer of the
evaluator: safe anywhere), allowlist membership, and a containment check after normalising that
guards the use (`contained_path`): ``os.path.realpath(p).startswith(BASE)``,
``Path(p).resolve().is_relative_to(BASE)``, ``os.path.commonpath([BASE, real]) ==
BASE``. Paths of unknown origin are not reported (the normal case in any program),
nor objects made from event data (``send_file(io.BytesIO(body))``: python/kinds.py).
"""

from __future__ import annotations

import ast

from donjon.scan.model import Confidence
from donjon.scan.python.hits import CallSite
from donjon.scan.python.imports import ImportMap
from donjon.scan.python.kinds import NORMALISED, OBJECT, PATH_KINDS, RESOLVED_PATH
from donjon.scan.python.values import Env, Value

__all__ = ["check_path", "contained_path"]

_FIRST = ((0, "path"),)
_BOTH = ((0, "src"), (1, "dst"))
#: Functions and the arguments that name a file: (position, keyword).
_FUNCTIONS: dict[str, tuple[tuple[int, str], ...]] = {
    **dict.fromkeys(("open", "builtins.open", "io.open"), ((0, "file"),)),
    "codecs.open": ((0, "filename"),),
    **{
        f"os.{f}": _FIRST
        for f in (
            "open",
            "remove",
            "unlink",
            "rmdir",
            "removedirs",
            "listdir",
            "scandir",
            "mkdir",
            "truncate",
        )
    },
    "os.walk": ((0, "top"),),
    "os.makedirs": ((0, "name"),),
    **{f"os.{f}": _BOTH for f in ("rename", "renames", "replace", "link", "symlink")},
    **{f"shutil.{f}": _BOTH for f in ("copy", "copy2", "copyfile", "copytree", "move")},
    "shutil.rmtree": _FIRST,
    **{f"{m}.send_file": ((0, "path_or_file"),) for m in ("flask", "flask.helpers")},
    # The file name is joined safely (safe_join); the directory is not checked.
    **{f"{m}.send_from_directory": ((0, "directory"),) for m in ("flask", "flask.helpers")},
    **{
        f"{m}.FileResponse": _FIRST
        for m in (
            "starlette.responses",
            "fastapi.responses",
            "fastapi",
            "aiohttp.web",
            "aiohttp.web_fileresponse",
        )
    },
    "tarfile.open": ((0, "name"),),
    "urllib.request.urlretrieve": ((1, "filename"),),
    "zipfile.ZipFile": ((0, "file"),),
}
#: Methods of a pathlib path that touch the file it names.
_PATH_METHODS = frozenset(
    {
        "open",
        "read_text",
        "read_bytes",
        "write_text",
        "write_bytes",
        "unlink",
        "rmdir",
        "touch",
        "mkdir",
        "iterdir",
        "rename",
        "replace",
        "symlink_to",
        "hardlink_to",
        "glob",
        "rglob",
    }
)
#: Path methods whose first argument is another file (the target of a rename).
_PATH_TARGETS = frozenset({"rename", "replace", "symlink_to", "hardlink_to"})
_NORMALISERS = frozenset(
    f"{m}.{f}" for m in ("os.path", "posixpath") for f in ("realpath", "abspath", "normpath")
)
_COMMONPATH = frozenset({"os.path.commonpath", "posixpath.commonpath"})
_PATH_BUILDERS = frozenset(
    {"os.path.join", "posixpath.join", "pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath"}
)


def _grade(site: CallSite, path: Value | None, what: str) -> None:
    if path is None or path.taint is None or path.kind == OBJECT or path.confined:
        return
    site.report(
        "DJ-PY-012",
        Confidence.HIGH,
        f"event data chooses the file {what} uses",
        value=path,
        sink_note=f"reaches {what}",
    )


def _s3_transfer(site: CallSite) -> None:
    """``download_file(Bucket, Key, Filename)`` (client), ``(Key, Filename)`` (bucket),
    ``(Filename)`` (object): the local file is the last positional argument;
    ``upload_file(Filename, ...)`` reads the first."""
    if site.method == "download_file":
        local = site.kwargs.get("Filename") or (site.args[-1] if site.args else None)
    else:
        local = site.arg(0, "Filename")
    _grade(site, local, f"the local file of .{site.method}()")


def check_path(site: CallSite, qual: str) -> None:
    """Run the path traversal rule on one call."""
    if qual in _FUNCTIONS:
        for position, keyword in _FUNCTIONS[qual]:
            _grade(site, site.arg(position, keyword), f"{qual}()")
    elif site.method in ("download_file", "upload_file"):
        _s3_transfer(site)
    elif site.method == "save":
        # An upload's or an image's .save(dst): a path when its text is known to be one.
        destination = site.arg(0, "dst") or site.arg(0, "fp")
        if destination is not None and destination.prefix is not None:
            _grade(site, destination, f".{site.method}()")
    elif (
        site.method in _PATH_METHODS
        and site.receiver is not None
        and site.receiver.kind in PATH_KINDS
    ):
        _grade(site, site.receiver, f"the path's .{site.method}()")
        if site.method in _PATH_TARGETS:
            _grade(site, site.arg(0, "target"), f"the path's .{site.method}()")


def contained_path(test: ast.expr, env: Env, imports: ImportMap) -> tuple[str, bool] | None:
    """The variable a containment check proves inside a base directory, if `test` is one,
    and whether the test is true when it is *outside* (``commonpath(...) != BASE``).

    The checked path must be normalised first (a prefix check on ``BASE + "/../etc"``
    proves nothing): a variable holding a normalised path, or a normaliser applied to
    the variable (or to a join of the base and the variable) in the test itself."""
    match test:
        case ast.Call(func=ast.Attribute(value=checked, attr="startswith" | "is_relative_to")):
            name = _normalised_subject(checked, env, imports)
            return None if name is None else (name, False)
        case ast.Compare(
            left=ast.Call(func=func, args=[ast.List(elts=[_, checked])]),
            ops=[ast.Eq() | ast.NotEq() as op],
        ) if imports.qualname(func) in _COMMONPATH:
            name = _normalised_subject(checked, env, imports)
            return None if name is None else (name, isinstance(op, ast.NotEq))
    return None


def _normalised_subject(node: ast.expr, env: Env, imports: ImportMap) -> str | None:
    if isinstance(node, ast.Name):
        known = env.get(node.id)
        return node.id if known is not None and known.kind in (NORMALISED, RESOLVED_PATH) else None
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if imports.qualname(func) in _NORMALISERS and node.args:
        return _subject(node.args[0], imports)
    if isinstance(func, ast.Attribute) and func.attr == "resolve":
        return _subject(func.value, imports)
    return None


def _subject(node: ast.expr, imports: ImportMap) -> str | None:
    """The variable a path expression is about: ``p``, ``Path(p)``, ``join(BASE, p)``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call) and imports.qualname(node.func) in _PATH_BUILDERS and node.args:
        return _subject(node.args[-1], imports)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div | ast.Add):
        return _subject(node.right, imports)
    return None
