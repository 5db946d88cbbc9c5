"""Data files on disk: the missing-file error, MD5 checks and downloads.

Nothing is downloaded unless ``data.download=true``. A download goes to a ``.part``
file beside its destination and is renamed into place only after its MD5 matches, so
an interrupted or corrupt download never looks like a data file.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from lt_sweeps.config import ConfigError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT_S = 60


class DataFileError(ConfigError):
    """A data file that is missing, corrupt or could not be downloaded, with the fix."""


def missing_files_error(data: str, missing: Sequence[Path], folder: Path) -> DataFileError:
    """Return the one-line error for data files of ``data`` missing from ``folder``."""
    names = ", ".join(path.name for path in missing)
    return DataFileError(
        f"data={data}: missing {names} in {folder}: put the official files there, "
        f"or add data.download=true to fetch them (data.root or LT_SWEEPS_DATA_ROOT sets the folder above {data}/)"
    )


def md5_of(path: Path) -> str:
    """Return the hexadecimal MD5 digest of the file at ``path``."""
    # MD5 serves as an integrity check against the published sums, not as security.
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: Path, expected: str) -> None:
    """Raise DataFileError when the MD5 of the file at ``path`` is not ``expected``."""
    actual = md5_of(path)
    if actual != expected:
        raise DataFileError(
            f"{path} has MD5 {actual}, expected {expected}: the file is corrupt or not the "
            f"official one; delete it and fetch it again"
        )


def download(urls: Sequence[str], destination: Path, expected_md5: str) -> None:
    """Download ``destination`` from the first of ``urls`` that responds and check its MD5.

    Raises:
        DataFileError: when every URL fails or the downloaded file has the wrong MD5.
            A file with the wrong MD5 is deleted.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    errors = []

    for url in urls:
        log.info("downloading %s to %s", url, destination)
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, partial.open("wb") as stream:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    stream.write(chunk)
        except (urllib.error.URLError, OSError) as error:
            log.warning("download of %s failed: %s", url, error)
            errors.append(f"{url}: {error}")
            partial.unlink(missing_ok=True)
            continue

        try:
            verify_md5(partial, expected_md5)
        except DataFileError:
            partial.unlink(missing_ok=True)
            raise DataFileError(
                f"download of {url} has the wrong MD5 (expected {expected_md5}) and was deleted: "
                f"try again later, or put the official file at {destination}"
            ) from None
        partial.replace(destination)
        return

    raise DataFileError(
        f"download of {destination.name} failed ({'; '.join(errors)}): check the network, "
        f"or put the official file at {destination}"
    )
