"""Who a sandbox runs as on the host, and what it is given to mount.

A sandbox's processes must never be host root underneath their user
namespace. When Donjon itself runs as root, bubblewrap is started as an
unprivileged host user (nobody by default, `DONJON_SANDBOX_UID/GID`), and
what it mounts is made reachable to that user: bundles are hard-linked (or
copied) into a staging directory outside the private data dir, the sandbox
runtime is copied there, and the interpreter must be one that user can
read. When Donjon runs as an ordinary user, sandboxes run as that user.
"""

from __future__ import annotations

import compileall
import hashlib
import hmac
import os
import secrets
import shutil
import stat
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from donjon.bundle.tree import remove_tree
from donjon.config import SandboxSettings
from donjon.sandbox.budget import node_tag
from donjon.sandbox.errors import SandboxUnavailable

__all__ = ["RUNTIME_SOURCE", "SandboxHost"]

RUNTIME_SOURCE = Path(__file__).parent / "runtime"
_NOBODY = 65534


def _reachable(path: Path, *, executable: bool = False) -> bool:
    """Can any user traverse to `path` and read (and run) it?"""
    path = path.resolve()
    for parent in reversed(path.parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
    mode = os.stat(path).st_mode
    need = stat.S_IROTH | (stat.S_IXOTH if executable or stat.S_ISDIR(mode) else 0)
    return mode & need == need


def _interpreter_candidates() -> list[Path]:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return [Path(sys.base_prefix) / "bin" / version, Path("/usr/bin") / version]


@dataclass
class SandboxHost:
    """The host side of every sandbox of this node."""

    #: Host uid/gid bubblewrap runs as; None: as Donjon itself (not root).
    uid: int | None
    gid: int | None
    python: Path
    runtime: Path
    staging: Path | None
    #: Host uids/gids to spread functions over (one per function, hashed by name);
    #: None: every sandbox runs as `uid`/`gid` (DONJON_SANDBOX_UID set).
    id_range: tuple[int, int] | None = None
    #: The node's secret key of that hash (`_uid_key`): no one can name a function to
    #: land on another function's uid.
    id_key: bytes = field(default=b"", repr=False)
    #: Staged bundles in use (by name: their digest) and by what, and the lock staging and
    #: collecting hold.
    _pins: dict[str, set[int]] = field(default_factory=dict, repr=False, compare=False)
    _staging_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def detect(cls, data_dir: Path, settings: SandboxSettings | None = None) -> SandboxHost:
        """This host's sandbox set-up for the node of `data_dir` (settings: config.py's)."""
        settings = settings or SandboxSettings()
        if shutil.which("bwrap") is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed; Donjon never runs a function unsandboxed",
                hint="run scripts/setup.sh, or: apt-get install bubblewrap",
            )
        if os.geteuid() != 0:
            return cls(None, None, cls._python(settings, needs_others=False), RUNTIME_SOURCE, None)
        if shutil.which("setpriv") is None:
            raise SandboxUnavailable(
                "setpriv is missing: it is how sandboxes leave root",
                hint="apt-get install util-linux",
            )
        # One uid per function from the range, unless one uid is set for all.
        id_range = settings.id_range if settings.uid is None else None
        uid = settings.uid if settings.uid is not None else settings.id_range[0]
        default_gid = id_range[0] if id_range else _NOBODY
        gid = settings.gid if settings.gid is not None else default_gid
        if uid == 0 or gid == 0:  # config.py refuses 0 too: never host root, whatever calls this
            raise SandboxUnavailable(
                "DONJON_SANDBOX_UID/GID must not be 0: sandboxes never run as host root"
            )
        node = node_tag(data_dir)
        staging = settings.staging_dir / node
        host = cls(
            uid,
            gid,
            cls._python(settings, needs_others=True),
            staging / "runtime",
            staging,
            id_range,
            _uid_key(data_dir) if id_range else b"",
        )
        _stage_runtime(staging, host.runtime)
        return host

    @staticmethod
    def _python(settings: SandboxSettings, *, needs_others: bool) -> Path:
        chosen = settings.python
        candidates = [chosen] if chosen else _interpreter_candidates()
        for candidate in candidates:
            if candidate.exists() and (not needs_others or _reachable(candidate, executable=True)):
                return candidate
        raise SandboxUnavailable(
            "no Python the sandbox user can run: tried " + ", ".join(map(str, candidates)),
            hint="install Debian's python3 (scripts/setup.sh does), or set DONJON_SANDBOX_PYTHON",
        )

    def ids_for(self, function: str) -> tuple[int, int]:
        """The host uid and gid `function`'s sandboxes run as.

        Per-user kernel limits (inotify instances and watches, epoll watches,
        pipe buffers, in-flight unix descriptors, POSIX message queue bytes,
        RLIMIT_NPROC) count per host uid: a uid per function keeps one function
        from draining them for another.
        """
        if self.uid is None or self.gid is None:
            return os.getuid(), os.getgid()
        if self.id_range is None or not function:
            return self.uid, self.gid
        lo, hi = self.id_range
        # Keyed: by a public hash of the name, a deployer could pick a name (a second of
        # tries) whose uid is a victim function's, and drain its per-user counters.
        digest = hmac.new(self.id_key, function.encode(), hashlib.sha256).digest()
        uid = lo + int.from_bytes(digest[:8], "big") % (hi - lo + 1)
        return uid, uid

    def launcher(self, function: str = "") -> list[str]:
        """The argv prefix that starts bubblewrap as the sandbox user.

        setpriv (util-linux) drops root's uid, gid and supplementary groups, and
        with them every capability, before bubblewrap runs.
        """
        if self.uid is None:
            return []
        uid, gid = self.ids_for(function)
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]

    def pin(self, bundle: Path, holder: object) -> None:
        """`bundle`'s staged copy is in use by `holder` (a version, a sandbox) until it
        `unpin`s it (once or more: only the first counts)."""
        with self._staging_lock:
            self._pins.setdefault(bundle.name, set()).add(id(holder))

    def unpin(self, bundle: Path, holder: object) -> None:
        with self._staging_lock:
            holders = self._pins.get(bundle.name, set())
            holders.discard(id(holder))
            if not holders:
                self._pins.pop(bundle.name, None)

    def pinned(self, name: str) -> bool:
        """Whether a version or a sandbox uses the bundle `name` (its digest)."""
        with self._staging_lock:
            return name in self._pins

    def collect_staging(self) -> list[str]:
        """Remove the staged bundles no pin holds (and half-made copies); their names."""
        if self.staging is None:
            return []
        root = self.staging / "bundles"
        removed: list[str] = []
        with self._staging_lock:
            try:
                names = [e.name for e in os.scandir(root)]
            except OSError:
                return []
            for name in names:
                if name.lstrip(".").rsplit("-", 1)[0] in self._pins:
                    continue  # a copy in use, or being made for a start
                if remove_tree(root / name):
                    removed.append(name)
        return removed

    def bundle_path(self, bundle: Path) -> Path:
        """Where the sandbox user can reach `bundle` (a content-addressed tree)."""
        if self.staging is None or _reachable(bundle):
            return bundle
        with self._staging_lock:
            return self._stage_bundle(bundle)

    def _stage_bundle(self, bundle: Path) -> Path:
        target = self.staging / "bundles" / bundle.name if self.staging else bundle
        if target.exists():
            return target
        _make_dirs(target.parent)
        tmp = target.parent / f".{bundle.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(bundle, tmp, copy_function=_link_or_copy)
        _share_read_only(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another start staged it first
        return target


#: The key of the uid hash, in the data dir (0600): the same across the node's restarts,
#: so a function keeps its uid and the files it left (none outside its sandbox) their owner.
_UID_KEY = "sandbox-uid.key"


def _uid_key(data_dir: Path) -> bytes:
    """The node's uid-hash key: read, or made once (published whole by a link, so two
    processes starting at once both read the one that won)."""
    path = data_dir / _UID_KEY
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = data_dir / f".{_UID_KEY}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        key = path.read_bytes()
    if len(key) != 32:
        raise SandboxUnavailable(
            f"{path} is not a sandbox uid key (32 bytes)",
            hint="remove it: the node makes a new one (functions then get new host uids)",
        )
    return key


def _stage_runtime(staging: Path, target: Path) -> None:
    """A fresh, byte-compiled copy of the sandbox runtime the sandbox user can read."""
    _check_staging(staging)
    _make_dirs(staging)
    fresh = staging / f".runtime-{os.getpid()}"
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(RUNTIME_SOURCE, fresh, ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(fresh, quiet=1, ddir="/opt/donjon/donjon_runtime")
    _share_read_only(fresh)
    shutil.rmtree(target, ignore_errors=True)
    os.rename(fresh, target)


def _check_staging(staging: Path) -> None:
    """Refuse a staging dir another user could change: whoever may rename in it or above it
    can swap the runtime or a bundle every sandbox mounts, and so run code in every
    function, with its secrets. It and each dir above it (links followed, and each link
    checked too) must be root's or this user's, and none writable by group or others
    unless sticky (as /tmp: there no one else can rename or remove what the node made)."""
    uid = os.geteuid()
    absolute = staging.absolute()
    seen = [(p, False) for p in [absolute, *absolute.parents]]
    seen += [(p, True) for p in [absolute.resolve(), *absolute.resolve().parents]]
    for path, followed in seen:
        try:
            st = os.stat(path) if followed else os.lstat(path)
        except FileNotFoundError:
            continue
        if st.st_uid not in (0, uid):
            raise SandboxUnavailable(
                f"the sandbox staging dir {staging}: {path} is owned by uid {st.st_uid}, "
                "who could swap what every sandbox mounts",
                hint="set DONJON_SANDBOX_DIR under a dir only root or this user can write "
                "(default /var/lib/donjon/sandbox)",
            )
        open_to_others = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if stat.S_ISDIR(st.st_mode) and open_to_others and not st.st_mode & stat.S_ISVTX:
            raise SandboxUnavailable(
                f"the sandbox staging dir {staging}: {path} is writable by others (mode "
                f"{stat.S_IMODE(st.st_mode):o}), who could swap what every sandbox mounts",
                hint=f"chmod go-w {path}, or set DONJON_SANDBOX_DIR elsewhere "
                "(default /var/lib/donjon/sandbox)",
            )


def _make_dirs(path: Path) -> None:
    """Create `path` and its parents traversable (0711) but not listable by others."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for p in reversed(missing):
        p.mkdir(mode=0o711)
        os.chmod(p, 0o711)  # nosec B103


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _share_read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            os.chmod(p, 0o555 if os.stat(p).st_mode & 0o100 else 0o444)  # nosec B103
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o555)  # nosec B103
    os.chmod(root, 0o555)  # nosec B103
