"""The key provider command (DONJON_KMS_COMMAND): good, failing, hanging, malformed."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from donjon._subprocess import MAX_OUTPUT
from donjon.config import ConfigError, load_settings
from donjon.secret import Secret
from donjon.store import SecretStore
from donjon.vault import VaultError
from donjon.vault.command import CommandKeyProvider
from donjon.vault.keyring import Keyring, open_vault
from vault.conftest import kms_argv

AAD = b"donjon-vault/v1\0data-key\0a\0id\0001"


def test_provider_round_trip(tmp_path: Path) -> None:
    """wrap then unwrap through the program gives the data key back; the AAD is bound."""
    provider = CommandKeyProvider(kms_argv(tmp_path))
    key = bytes(range(32))
    wrapped, kek_id = asyncio.run(provider.wrap(key, AAD))
    assert kek_id.startswith("kms:test-") and key not in wrapped
    assert asyncio.run(provider.unwrap(wrapped, AAD, kek_id)) == key
    with pytest.raises(VaultError, match="does not decrypt"):
        asyncio.run(provider.unwrap(wrapped, AAD + b"x", kek_id))


def test_vault_through_the_provider(store: SecretStore, keyring: Keyring, tmp_path: Path) -> None:
    """A vault over the provider stores rows under its key id and opens them again."""
    kms = Keyring(keyring.master, keyring.vault_key_path, kms_argv(tmp_path))
    vault = open_vault(store, kms)
    asyncio.run(vault.set("a", Secret("via-kms"), "key:test"))
    latest = store.latest("a")
    assert latest is not None and latest.kek_id.startswith("kms:")
    assert asyncio.run(open_vault(store, kms).open_granted(["a"])) == {"a": "via-kms"}
    # Without the provider, a node cannot open the rows: the key is not beside the database.
    with pytest.raises(VaultError, match="does not hold"):
        asyncio.run(open_vault(store, keyring).open_granted(["a"]))


def test_failing_provider_carries_its_stderr(tmp_path: Path) -> None:
    """A provider that exits non-zero fails the operation with its own words."""
    provider = CommandKeyProvider(kms_argv(tmp_path, "--fail"))
    with pytest.raises(VaultError, match="access denied to key alias/donjon"):
        asyncio.run(provider.wrap(bytes(32), AAD))


def test_a_provider_echoing_its_request_does_not_put_the_data_key_in_the_error(
    tmp_path: Path,
) -> None:
    """A failing provider that prints what it was asked: the error (a problem's detail, the
    server's log) keeps its words but not the data key it was given to wrap."""
    key = bytes(range(32))
    provider = CommandKeyProvider(kms_argv(tmp_path, "--echo"))
    with pytest.raises(VaultError) as failed:
        asyncio.run(provider.wrap(key, AAD))
    assert "provider: cannot serve" in failed.value.message
    assert base64.b64encode(key).decode() not in str(failed.value)
    assert base64.b64encode(AAD).decode() in failed.value.message  # not a secret: kept


@pytest.mark.slow
def test_hanging_provider_times_out(tmp_path: Path) -> None:
    """A provider that never answers is stopped at the timeout, with a clear error."""
    provider = CommandKeyProvider(kms_argv(tmp_path, "--hang"), timeout_s=1.0)
    with pytest.raises(VaultError, match="did not finish within"):
        asyncio.run(provider.wrap(bytes(32), AAD))


def test_a_provider_printing_without_end_is_cut_off(tmp_path: Path) -> None:
    """An answer of the protocol's shape 64 MiB long: the provider is stopped once it has
    printed MAX_OUTPUT bytes, and the operation fails saying so (before, all of it was
    read into the node's memory, then refused as a key of the wrong size)."""
    provider = CommandKeyProvider(kms_argv(tmp_path, "--huge"))
    with pytest.raises(VaultError, match=f"printed more than {MAX_OUTPUT} bytes"):
        asyncio.run(provider.unwrap(b"x" * 60, AAD, "kms:test-0"))


@pytest.mark.parametrize("mode", ["--garbage", "--not-object"])
def test_malformed_output_is_refused(tmp_path: Path, mode: str) -> None:
    """Output that is not the protocol's JSON object is an error, not a key."""
    provider = CommandKeyProvider(kms_argv(tmp_path, mode))
    with pytest.raises(VaultError, match="malformed output"):
        asyncio.run(provider.wrap(bytes(32), AAD))


def test_missing_program_is_clear(tmp_path: Path) -> None:
    """A provider program that does not exist is named in the error."""
    provider = CommandKeyProvider([str(tmp_path / "no-such-kms")])
    with pytest.raises(VaultError, match="not installed"):
        asyncio.run(provider.wrap(bytes(32), AAD))


def test_settings_read_the_kms_command_and_key_file(tmp_path: Path) -> None:
    """DONJON_KMS_COMMAND is split into argv; DONJON_MASTER_KEY_FILE must be absolute."""
    env = {"DONJON_DATA_DIR": str(tmp_path), "DONJON_KMS_COMMAND": "kms-tool --key 'alias/a b'"}
    assert load_settings(env).kms_command == ("kms-tool", "--key", "alias/a b")
    env = {"DONJON_DATA_DIR": str(tmp_path), "DONJON_MASTER_KEY_FILE": "/keys/m.key"}
    assert load_settings(env).master_key_path == Path("/keys/m.key")
    assert load_settings(env).vault_key_path == Path("/keys/vault.key")
    with pytest.raises(ConfigError):
        load_settings({"DONJON_DATA_DIR": str(tmp_path), "DONJON_MASTER_KEY_FILE": "rel.key"})
    with pytest.raises(ConfigError):
        load_settings({"DONJON_DATA_DIR": str(tmp_path), "DONJON_KMS_COMMAND": "kms 'open"})
