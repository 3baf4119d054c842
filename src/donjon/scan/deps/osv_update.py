"""``donjon scan --update-db``: fetch OSV's PyPI export into the data directory.

The download goes to a temporary file beside the target, is checked (a zip holding
OSV records), then replaces the old copy atomically: a failed or partial download
never leaves a broken database behind.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import httpx

from donjon.scan.errors import ScanError

__all__ = ["EXPORT_NAME", "OSV_PYPI_EXPORT_URL", "advisories_dir", "update_advisory_db"]

OSV_PYPI_EXPORT_URL = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
EXPORT_NAME = "osv-pypi.zip"
_MAX_BYTES = 2 * 1024**3


def advisories_dir(data_dir: Path) -> Path:
    """Where the data directory keeps the advisory database."""
    return data_dir / "advisories"


def update_advisory_db(data_dir: Path, *, url: str | None = None, timeout: float = 60.0) -> Path:
    """Download the OSV PyPI export (or `url`) to ``DATA_DIR/advisories/``; return its path."""
    url = url or OSV_PYPI_EXPORT_URL
    target_dir = advisories_dir(data_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".zip", dir=target_dir)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response,
        ):
            response.raise_for_status()
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > _MAX_BYTES:
                    raise ScanError(f"{url} is larger than {_MAX_BYTES // 1024**3} GiB")
                out.write(chunk)
        _check(tmp, url)
        final = target_dir / EXPORT_NAME
        tmp.replace(final)
        return final
    except httpx.HTTPError as e:
        raise ScanError(
            f"could not download the OSV advisory export from {url}: {e}",
            hint="check this host's network access, or download the zip elsewhere and pass "
            "it with --advisories FILE",
        ) from e
    finally:
        tmp.unlink(missing_ok=True)


def _check(path: Path, url: str) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(n.endswith(".json") for n in archive.namelist()):
                raise ScanError(f"{url} returned a zip with no OSV records")
    except zipfile.BadZipFile as e:
        raise ScanError(f"{url} did not return a zip file") from e
