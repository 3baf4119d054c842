"""A test key provider for DONJON_KMS_COMMAND: holds its own key, speaks the documented protocol.

Usage: python kms_provider.py KEYFILE [--fail | --hang | --garbage | --not-object | --echo
                                       | --huge | --hold-unwraps-while PATH]
(the key file is created, 32 random bytes, on first use). Reads one JSON request
on stdin, writes one JSON answer on stdout (docs/security.md, "The vault").
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def main() -> None:
    keyfile = Path(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    if _misbehaves(mode):
        return
    if not keyfile.exists():
        keyfile.write_bytes(os.urandom(32))
    key = keyfile.read_bytes()
    if mode == "--hold-unwraps-while":
        sys.stdin = io.StringIO(_hold(Path(sys.argv[3]), sys.stdin.read()))
    key_id = "test-" + hashlib.sha256(key).hexdigest()[:12]
    request = json.load(sys.stdin)
    aad = base64.b64decode(request["aad"])
    if request["op"] == "wrap":
        nonce = os.urandom(12)
        sealed = nonce + AESGCM(key).encrypt(nonce, base64.b64decode(request["plaintext"]), aad)
        print(json.dumps({"key_id": key_id, "ciphertext": base64.b64encode(sealed).decode()}))
    elif request["op"] == "unwrap":
        if request["key_id"] != key_id:
            print(f"provider: unknown key {request['key_id']}", file=sys.stderr)
            sys.exit(4)
        sealed = base64.b64decode(request["ciphertext"])
        try:
            plain = AESGCM(key).decrypt(sealed[:12], sealed[12:], aad)
        except Exception:
            print("provider: the ciphertext does not decrypt", file=sys.stderr)
            sys.exit(5)
        print(json.dumps({"plaintext": base64.b64encode(plain).decode()}))
    else:
        print(f"provider: unknown op {request['op']}", file=sys.stderr)
        sys.exit(2)


def _misbehaves(mode: str) -> bool:
    """Whether `mode` answers (or fails) without serving the request."""
    if mode == "--fail":
        print("provider: access denied to key alias/donjon", file=sys.stderr)
        sys.exit(3)
    if mode == "--echo":  # fails, telling what it was asked (a script debugging itself)
        print(f"provider: cannot serve {sys.stdin.read()}", file=sys.stderr)
        sys.exit(3)
    if mode == "--hang":
        time.sleep(60)
    if mode == "--huge":  # the shape of an answer, 64 MiB long
        sys.stdout.write('{"plaintext": "' + "A" * (64 << 20) + '"}')
        return True
    if mode == "--garbage":
        print("this is not json")
        return True
    if mode == "--not-object":
        print("[1, 2]")
        return True
    return False


def _hold(flag: Path, request: str) -> str:
    """While `flag` exists, an unwrap waits until it is removed (a KMS that hangs), each
    such run leaving a file `flag`.PID that says it ran; `request`, to be served then."""
    if flag.exists() and json.loads(request)["op"] == "unwrap":
        flag.with_name(f"{flag.name}.{os.getpid()}").touch()
        while flag.exists():
            time.sleep(0.05)
    return request


if __name__ == "__main__":
    main()
