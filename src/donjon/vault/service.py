"""`Vault`: secrets set, rotated, listed, removed and opened, never returned to a caller.

Every write seals a new version (envelope.py) under a fresh data key wrapped
by the key provider; the node opens the newest version of a granted secret for
a call and keeps it, opened, in memory until this node changes that secret
(set, rotate, rm, rekey), so the hot path touches neither the disk nor the
key provider. Writes are one at a time (a lock), so a rekey never races a set.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets as _random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from donjon.secret import Secret
from donjon.store import SecretStore, SecretSummary, StoreConflict, VersionRow
from donjon.vault.envelope import aad_for, gcm_decrypt, gcm_encrypt, new_data_key
from donjon.vault.errors import GraceEndForbidden, GrantedTooLarge, SecretNotFound, VaultError
from donjon.vault.interface import KeyProvider
from donjon.vault.names import check_name, check_value

__all__ = ["ACCEPTED_CACHE_S", "MAX_ACCEPTED", "MAX_GRANTED", "Vault", "VersionInfo"]

#: The versions a webhook accepts are read again at least this often (another node's
#: rotation is seen within it).
ACCEPTED_CACHE_S = 60.0
#: At most this many versions of a secret are accepted at once (the newest ones).
MAX_ACCEPTED = 4
#: The most characters of secret values one call carries, all its function's grants
#: together: each call sends them to the sandbox and builds their redactor (every value's
#: escaped forms, searched for in what it printed), on the node's event loop. Four of the
#: largest values; 150 of them stalled the node about 0.4 s per call.
MAX_GRANTED = 256 * 1024


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int


class Vault:
    """The node's vault over `store`; `provider` wraps new data keys, `readers` also unwrap."""

    def __init__(self, store: SecretStore, provider: KeyProvider, *readers: KeyProvider) -> None:
        self.store = store
        self.provider = provider
        self._readers: tuple[KeyProvider, ...] = (provider, *readers)
        self._opened: dict[str, tuple[int, Secret[str]]] = {}
        #: name -> the one open of it under way, which every call asking meanwhile awaits.
        self._opening: dict[str, asyncio.Future[tuple[int, Secret[str]]]] = {}
        #: name -> (read again after, in monotonic seconds; the accepted values, newest first).
        self._accepted: dict[str, tuple[float, tuple[Secret[str], ...]]] = {}
        self._writes = asyncio.Lock()
        #: Bumped by every write: a value opened across a write is not kept.
        self._generation = 0

    # -- writes --------------------------------------------------------------------------

    async def set(self, name: str, value: Secret[str], actor: str) -> VersionInfo:
        """Create `name` at version 1; `StoreConflict` if it exists (rotate it instead)."""
        check_name(name)
        check_value(value.reveal())
        async with self._writes:
            if await asyncio.to_thread(self.store.get, name) is not None:
                raise StoreConflict(
                    f"secret {name} exists already",
                    hint=f"`donjon secret rotate {name}` gives it a new version",
                )
            row = await self._seal(name, _random.token_hex(16), 1, value)
            await asyncio.to_thread(self.store.add, row, actor, create=True)
            self._forget(name)
        return VersionInfo(name, 1)

    async def rotate(
        self,
        name: str,
        value: Secret[str],
        actor: str,
        *,
        no_grace: bool = False,
        admin: bool = False,
    ) -> VersionInfo:
        """Add a version to `name`; calls from now on get it. With `no_grace` every older
        version is deleted with it, so no webhook accepts them past this node's next read
        (another node's, within ACCEPTED_CACHE_S): for a value known to have leaked. Only
        an `admin` or the secret's creator may (`GraceEndForbidden`: nothing changed)."""
        check_name(name)
        check_value(value.reveal())
        async with self._writes:
            existing = await asyncio.to_thread(self.store.get, name)
            if existing is None:
                raise SecretNotFound(f"no secret named {name}", hint=f"`donjon secret set {name}`")
            if no_grace and not (admin or existing.created_by == actor):
                raise GraceEndForbidden(
                    f"only an admin or the creator of secret {name} may end its grace",
                    hint="rotate it with its grace, or ask an admin to rotate it without",
                )
            version = await asyncio.to_thread(self.store.next_version, name)
            row = await self._seal(name, existing.secret_id, version, value)
            await asyncio.to_thread(self.store.add, row, actor, create=False, drop_older=no_grace)
            self._forget(name)
        return VersionInfo(name, version)

    async def remove(self, name: str) -> None:
        check_name(name)
        async with self._writes:
            if not await asyncio.to_thread(self.store.remove, name):
                raise SecretNotFound(f"no secret named {name}")
            self._forget(name)

    async def rewrap_all(self, provider: KeyProvider, committing: str | None = None) -> int:
        """Re-wrap every data key under `provider`, in one transaction; the count re-wrapped.

        The values and their ciphertexts are untouched (the data keys stay the same);
        on any failure nothing is changed. Caller holds `writes` (rekey.py), and names
        the local key it moves to (`committing`), recorded in the same transaction.
        """
        rows = await asyncio.to_thread(self.store.all_versions)
        out = []
        for r in rows:
            aad = aad_for(r.name, r.secret_id, r.version, "data-key")
            data_key = await self._unwrap(r, aad)
            wrapped, kek_id = await provider.wrap(data_key, aad)
            out.append(VersionRow(r.name, r.secret_id, r.version, r.ciphertext, wrapped, kek_id))
        # Calls keep opening secrets meanwhile: from the commit on, rows name the new key.
        readers = self._readers
        self._readers = (*readers, provider)
        thread = asyncio.ensure_future(asyncio.to_thread(self.store.rewrap, out, committing))
        try:
            await asyncio.shield(thread)
        except BaseException:
            # Cancelled (a request cut, a node stopping), the transaction runs on in its
            # thread and may yet commit: what it did decides, so wait for it. Committed,
            # the rows name the new key: it stays a reader (the caller keeps its file).
            while not thread.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([thread])
            if thread.cancelled() or thread.exception() is not None:
                self._readers = readers
            else:
                self._forget(None)
            raise
        self._forget(None)
        return len(out)

    def _forget(self, name: str | None) -> None:
        self._generation += 1
        if name is None:
            self._opened.clear()
            self._accepted.clear()
            self._opening.clear()
        else:
            self._opened.pop(name, None)
            self._accepted.pop(name, None)
            self._opening.pop(name, None)

    @property
    def writes(self) -> asyncio.Lock:
        """Held by every write; a rekey holds it from start to end."""
        return self._writes

    def use(self, provider: KeyProvider, *readers: KeyProvider) -> None:
        """Wrap with `provider` from now on (after a rekey commits)."""
        self.provider = provider
        self._readers = (provider, *readers)

    # -- reads ---------------------------------------------------------------------------

    async def summaries(self) -> list[SecretSummary]:
        return await asyncio.to_thread(self.store.summaries)

    async def missing(self, names: Iterable[str]) -> list[str]:
        """Which of `names` the vault does not hold (a deploy granting them is refused)."""
        wanted = set(names)
        if not wanted:
            return []
        have = await asyncio.to_thread(self.store.names)
        return sorted(wanted - have)

    async def open_granted(self, names: Iterable[str]) -> dict[str, str]:
        """The newest value of each of `names`, for one call. `SecretNotFound` if one is gone,
        `GrantedTooLarge` if together they are over MAX_GRANTED characters."""
        out = {}
        total = 0
        for name in names:
            opened = self._opened.get(name)
            if opened is None:
                opened = await self._open_shared(name)
            out[name] = value = opened[1].reveal()
            total += len(value)
        if total > MAX_GRANTED:
            # Not how many: the caller may not read them (their length is theirs too).
            raise GrantedTooLarge(
                "the values of the secrets this function is granted are together, in "
                f"characters, over the {MAX_GRANTED} one call carries",
                hint="grant it fewer or smaller secrets",
            )
        return out

    async def open_accepted(self, name: str, grace_s: float) -> list[str]:
        """The values a signature may be made with, newest first: the latest version, and
        each older one whose successor was made less than `grace_s` seconds ago (a sender
        still signing with the previous secret right after a rotation). At most
        MAX_ACCEPTED. `SecretNotFound` if `name` is not in the vault.

        Kept opened for ACCEPTED_CACHE_S at most (never past the end of a grace), and
        forgotten at once when this node changes the secret."""
        cached = self._accepted.get(name)
        if cached is not None and time.monotonic() < cached[0]:
            return [value.reveal() for value in cached[1]]
        generation = self._generation
        rows = await asyncio.to_thread(self.store.recent, name, MAX_ACCEPTED)
        if not rows:
            raise SecretNotFound(
                f"the webhook's secret {name} is not in the vault",
                hint=f"`donjon secret set {name}`",
            )
        now = time.time()
        values = [await self._open_row(rows[0][0])]
        keep_s = ACCEPTED_CACHE_S
        for (row, _), (_, successor_made) in zip(rows[1:], rows, strict=False):
            left = successor_made + grace_s - now
            if left <= 0:
                break
            values.append(await self._open_row(row))
            keep_s = min(keep_s, left)
        if generation == self._generation:
            self._accepted[name] = (time.monotonic() + keep_s, tuple(Secret(v) for v in values))
        return values

    async def _open_row(self, row: VersionRow) -> str:
        data_key = await self._unwrap(
            row, aad_for(row.name, row.secret_id, row.version, "data-key")
        )
        aad = aad_for(row.name, row.secret_id, row.version, "value")
        plain = gcm_decrypt(
            data_key, row.ciphertext, aad, f"secret {row.name} version {row.version}"
        )
        return plain.decode("utf-8")

    async def _open_shared(self, name: str) -> tuple[int, Secret[str]]:
        """`_open_latest(name)`, run once for every call asking while it runs: a burst of
        calls meeting a cold cache (a start, a rotation, a rekey) ran the key provider
        once each. One caller cancelled does not cancel it for the others."""
        opening = self._opening.get(name)
        if opening is None:
            opening = asyncio.ensure_future(self._open_latest(name))
            self._opening[name] = opening
            opening.add_done_callback(functools.partial(self._opened_once, name))
        return await asyncio.shield(opening)

    def _opened_once(self, name: str, opening: asyncio.Future[tuple[int, Secret[str]]]) -> None:
        if self._opening.get(name) is opening:
            del self._opening[name]
        if not opening.cancelled():
            opening.exception()  # retrieved: its callers (if any are left) have it too

    async def _open_latest(self, name: str) -> tuple[int, Secret[str]]:
        generation = self._generation
        row = await asyncio.to_thread(self.store.latest, name)
        if row is None:
            raise SecretNotFound(
                f"the function is granted secret {name}, which is not in the vault",
                hint=f"`donjon secret set {name}`",
            )
        opened = (row.version, Secret(await self._open_row(row)))
        # Kept only if nothing was written meanwhile (the row read may be stale).
        if generation == self._generation:
            self._opened[name] = opened
        return opened

    async def _seal(
        self, name: str, secret_id: str, version: int, value: Secret[str]
    ) -> VersionRow:
        data_key = new_data_key()
        ciphertext = gcm_encrypt(
            data_key, value.reveal().encode("utf-8"), aad_for(name, secret_id, version, "value")
        )
        wrapped, kek_id = await self.provider.wrap(
            data_key, aad_for(name, secret_id, version, "data-key")
        )
        return VersionRow(name, secret_id, version, ciphertext, wrapped, kek_id)

    async def _unwrap(self, row: VersionRow, aad: bytes) -> bytes:
        for reader in self._readers:
            if reader.holds(row.kek_id):
                return await reader.unwrap(row.wrapped_key, aad, row.kek_id)
        raise VaultError(
            f"secret {row.name} version {row.version} was wrapped by key {row.kek_id}, "
            "which this node does not hold",
            hint="start the node with the master key or DONJON_KMS_COMMAND that wrapped it",
        )
