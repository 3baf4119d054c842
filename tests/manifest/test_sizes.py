"""Sizes in a manifest (`limits.body`): parsed strictly, never guessed."""

from __future__ import annotations

import pytest

from donjon.manifest import ManifestError
from donjon.manifest.loader import parse_manifest
from donjon.manifest.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("512KiB", 512 * 1024), ("2MiB", 2 * 1024 * 1024), ("4096B", 4096), ("1B", 1)],
)
def test_sizes_in_b_kib_mib_are_read(text: str, size: int) -> None:
    """A whole number and B, KiB or MiB is that many bytes."""
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "1", "1.5MiB", "1mb", "1MB", "1 MiB", "0KiB", "01MiB", "-1B", "1GiB", "2048MiB"]
)
def test_anything_else_is_refused(text: str) -> None:
    """No unit, a fraction, another unit or case, a space, zero, a sign, over 1 GiB: refused."""
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_sizes_are_written_back_in_the_largest_whole_unit() -> None:
    """1 MiB, 64 KiB, 1000 B."""
    assert [format_size(n) for n in (1024 * 1024, 64 * 1024, 1000)] == ["1 MiB", "64 KiB", "1000 B"]


def test_manifest_body_limit_defaults_to_1_mib() -> None:
    """No limits.body: 1 MiB; limits.body 2MiB: 2 MiB; 2 MB: an invalid manifest."""
    base = "name: sized\nhandler: main.handler\n"
    assert parse_manifest(base).limits.body_bytes == 1024 * 1024
    assert parse_manifest(base + "limits: {body: 2MiB}\n").limits.body_bytes == 2 * 1024 * 1024
    with pytest.raises(ManifestError):
        parse_manifest(base + "limits: {body: 2 MB}\n")
