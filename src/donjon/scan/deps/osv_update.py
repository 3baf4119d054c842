"""``donjon scan --update-db``: fetch OSV's PyPI export into the data directory.

The download goes to a temporary file beside the target, is checked (a zip holding
OSV records), then replaces the old copy atomically: a failed or partial download
never leaves a broken database behind. httpx's timeout bounds each read; the whole
download is bounded too (`deadline_s`), so a server dripping bytes cannot hold it.
"""

from __future__ import annotations

import os
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

from donjon.scan.errors import ScanError

__all__ = ["EXPORT_NAME", "OSV_PYPI_EXPORT_URL", "advisories_dir", "update_advisory_db"]

OSV_PYPI_EXPORT_URL = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
EXPORT_NAME = "osv-pypi.zip"
_MAX_BYTES = 2 * 1024**3
#: The whole download's limit, in seconds. No setting: the export is some hundred MB,
#: minutes on a slow link; past this the source is stalling, and a retry is better.
DOWNLOAD_DEADLINE_S = 1800.0


def advisories_dir(data_dir: Path) -> Path:
    """Where the data directory keeps the advisory database."""
    return data_dir / "advisories"


def update_advisory_db(
    data_dir: Path,
    *,
    url: str | None = None,
    timeout: float = 60.0,
    deadline_s: float = DOWNLOAD_DEADLINE_S,
) -> Path:
    """Download the OSV PyPI export (or `url`) to ``DATA_DIR/advisories/``; return its path.
    `timeout` bounds each read, `deadline_s` the whole download (`ScanError` past it)."""
    url = url or OSV_PYPI_EXPORT_URL
    end = time.monotonic() + deadline_s
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
                if time.monotonic() > end:
                    raise ScanError(
                        f"{url} did not finish downloading within {deadline_s:g} s",
                        hint="the source is too slow or stalling; it is tried again later",
                    )
                if size > _MAX_BYTES:
                    raise ScanError(f"{url} is larger than {_MAX_BYTES // 1024**3} GiB")
                out.write(chunk)
        _check(tmp, url)
        final = target_dir / EXPORT_NAME
        tmp.replace(final)
        return final
    except (httpx.HTTPError, httpx.InvalidURL) as e:
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
