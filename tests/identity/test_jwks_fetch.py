"""Fetching an issuer's JWKS: what the node asks for and what it reads.

A JWKS is bounded (`MAX_JWKS_BYTES`) as it arrives. A compressed answer was decoded
first (httpx decodes each chunk read whole), so the bound applied after decompression:
a 64 KiB chunk of gzip expanded to about 64 MB in the node before the check. The node
now asks for the document as it is (`accept-encoding: identity`) and refuses an
encoded answer without decoding it."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import tracemalloc
from pathlib import Path

import pytest

from donjon.identity.jwks import JwksError, fetch_jwks
from jwt_support import SigningKey, jwks, jwks_server


def test_a_jwks_is_asked_for_unencoded_and_read(tmp_path: Path) -> None:
    with jwks_server(tmp_path) as server:
        url = server.publish("/keys", jwks(SigningKey.generate("k1")))
        context = ssl.create_default_context(cafile=str(server.ca_file))
        keys = asyncio.run(fetch_jwks(url, context))
    assert sorted(keys.keys) == ["k1"]
    assert server.accepted == ["identity"]


def test_a_compressed_jwks_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    document = json.dumps(jwks(SigningKey.generate("k1"))).encode()
    bomb = gzip.compress(document[:-1] + b" " * (256 << 20) + b"}", compresslevel=9)
    assert len(bomb) < 512 << 10  # about 256 KiB on the wire, 256 MiB decoded
    with jwks_server(tmp_path) as server:
        url = server.publish("/keys", bomb)
        server.encodings["/keys"] = "gzip"
        context = ssl.create_default_context(cafile=str(server.ca_file))
        tracemalloc.start()
        try:
            with pytest.raises(JwksError, match="gzip") as refused:
                asyncio.run(fetch_jwks(url, context))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "content-encoding" in refused.value.message
    assert peak < 16 << 20, f"{peak >> 20} MiB held while fetching a {len(bomb)}-byte answer"
