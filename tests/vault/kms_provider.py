"""A test key provider for DONJON_KMS_COMMAND: holds its own key, speaks the documented protocol.

Usage: python kms_provider.py KEYFILE [--fail | --hang | --garbage | --not-object | --echo]
(the key file is created, 32 random bytes, on first use). Reads one JSON request
on stdin, writes one JSON answer on stdout (docs/security.md, "The vault").
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def main() -> None:
    keyfile = Path(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    if mode == "--fail":
        print("provider: access denied to key alias/donjon", file=sys.stderr)
        sys.exit(3)
    if mode == "--echo":  # fails, telling what it was asked (a script debugging itself)
        print(f"provider: cannot serve {sys.stdin.read()}", file=sys.stderr)
        sys.exit(3)
    if mode == "--hang":
        time.sleep(60)
    if mode == "--garbage":
        print("this is not json")
        return
    if mode == "--not-object":
        print("[1, 2]")
        return
    if not keyfile.exists():
        keyfile.write_bytes(os.urandom(32))
    key = keyfile.read_bytes()
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


if __name__ == "__main__":
    main()
