"""`CommandKeyProvider`: data keys wrapped and unwrapped by an external program.

DONJON_KMS_COMMAND is the program's argv (split like a shell would, never run
by one). For each operation Donjon runs it once, writes one JSON object to its
stdin and reads one JSON object from its stdout (docs/security.md, "The vault"):

    {"op": "wrap", "plaintext": B64, "aad": B64}         -> {"key_id": STR, "ciphertext": B64}
    {"op": "unwrap", "key_id": STR, "ciphertext": B64, "aad": B64} -> {"plaintext": B64}

The program must bind `aad` to the ciphertext (AES-GCM's associated data, or
a KMS's encryption context). A non-zero exit fails the operation with the
program's stderr (a data key in clear taken out); so does a run past the
timeout, more than MAX_OUTPUT bytes printed, or output that is not that shape.
The program runs from the event loop, holding none of its threads (_subprocess.py's
`run_async`). Key ids are stored as `kms:` + the program's id.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from typing import Any

from donjon._subprocess import CommandError, run_async
from donjon.vault.errors import VaultError
from donjon.vault.interface import KeyProvider

__all__ = ["KMS_PREFIX", "CommandKeyProvider"]

KMS_PREFIX = "kms:"
_MAX_KEY_ID = 120
#: A data key in clear as the protocol carries it (a wrap's request, an unwrap's answer):
#: taken out of what a failing program printed (its stderr, else its stdout), which
#: becomes the error's message, and so the server's log.
_PLAINTEXT = re.compile(r'"plaintext"\s*:\s*"[^"]*"')


class CommandKeyProvider(KeyProvider):
    """Runs `argv` for every wrap and unwrap (the node caches opened values, vault/service.py)."""

    def __init__(self, argv: Sequence[str], timeout_s: float = 10.0) -> None:
        if not argv:
            raise VaultError("DONJON_KMS_COMMAND is empty", hint="name the key provider program")
        self.argv = tuple(argv)
        self.timeout_s = timeout_s

    async def wrap(self, data_key: bytes, aad: bytes) -> tuple[bytes, str]:
        out = await self._call({"op": "wrap", "plaintext": _b64(data_key), "aad": _b64(aad)})
        key_id = out.get("key_id")
        if (
            not isinstance(key_id, str)
            or not key_id
            or len(key_id) > _MAX_KEY_ID
            or not key_id.isprintable()
        ):
            raise self._malformed("key_id must be a printable string of 1 to 120 characters")
        return self._bytes(out, "ciphertext"), KMS_PREFIX + key_id

    async def unwrap(self, wrapped: bytes, aad: bytes, kek_id: str) -> bytes:
        if not self.holds(kek_id):
            raise VaultError(
                f"the data key was wrapped by key {kek_id}, not by the key provider",
                hint="run `donjon vault rekey` with the master key that wrapped it",
            )
        out = await self._call(
            {
                "op": "unwrap",
                "key_id": kek_id.removeprefix(KMS_PREFIX),
                "ciphertext": _b64(wrapped),
                "aad": _b64(aad),
            }
        )
        plain = self._bytes(out, "plaintext")
        if len(plain) != 32:
            raise self._malformed("plaintext is not a 32-byte data key")
        return plain

    def holds(self, kek_id: str) -> bool:
        return kek_id.startswith(KMS_PREFIX)

    async def _call(self, request: dict[str, str]) -> dict[str, Any]:
        try:
            stdout = await run_async(
                self.argv,
                input=json.dumps(request),
                timeout=self.timeout_s,
                hint="check DONJON_KMS_COMMAND and the key provider's own logs",
            )
        except CommandError as e:
            said = _PLAINTEXT.sub('"plaintext": "[data key]"', e.message)
            if "plaintext" in request:
                said = said.replace(request["plaintext"], "[data key]")
            raise VaultError(f"the key provider failed: {said}", hint=e.hint) from None
        try:
            out = json.loads(stdout)
        except ValueError:
            raise self._malformed("its output is not JSON") from None
        if not isinstance(out, dict):
            raise self._malformed("its output is not a JSON object")
        return out

    def _bytes(self, out: dict[str, Any], field: str) -> bytes:
        value = out.get(field)
        if not isinstance(value, str):
            raise self._malformed(f"{field} is missing")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise self._malformed(f"{field} is not base64") from None

    def _malformed(self, what: str) -> VaultError:
        return VaultError(
            f"the key provider {self.argv[0]} answered malformed output: {what}",
            hint="it must print one JSON object (docs/security.md, 'The vault')",
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
