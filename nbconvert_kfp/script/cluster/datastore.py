"""Data files in a run: the notebook's own files for a local run, the object store's copies for a cluster.

The generated script's ``DATA`` names each data item (a file, folder or glob's matches next to
the notebook that steps read) with the SHA-256 of each file and one digest of them all. (A local
run gives the steps the files in the script's folder through a KFP importer whose metadata holds
their current digests, so kfp.local's cache key changes exactly when a file does: the script's
``data_input`` does that itself, as the pipeline function runs before these tools load.) An item
that travels through the object store lives under ``DATA_ROOT/<digest>/<path>``: ``push``
copies it there (content-addressed, so a copy is never overwritten with other content, and one
already there is not sent again), and the pipeline's importer reads that folder.

Object stores are reached with fsspec (``s3fs`` for ``minio://`` and ``s3://``, ``gcsfs`` for
``gs://``), imported only when data is pushed. Credentials come from where those libraries find
them (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...);
the endpoint of ``minio://`` and ``s3://`` from ``AWS_ENDPOINT_URL``, for ``minio://`` by default
the MinIO service of a KFP install, as a notebook server in the cluster reaches it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from ..exceptions import ScriptError

#: Where ``minio://`` data goes when ``AWS_ENDPOINT_URL`` does not say: a KFP install's MinIO, in the cluster.
DEFAULT_MINIO_ENDPOINT = "http://minio-service.kubeflow:9000"
#: The distribution fsspec needs for each object-store scheme.
FILESYSTEMS = {"minio": ("s3", "s3fs"), "s3": ("s3", "s3fs"), "gs": ("gcs", "gcsfs")}


class DataError(ScriptError):
    """Data files that cannot be given to a run (changed since the conversion, missing, not pushed)."""


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's content, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def current_files(folder: Path, item: Mapping[str, Any]) -> dict[str, str]:
    """The item's files in ``folder`` now: relative path -> SHA-256 (a missing file is a ``DataError``)."""
    found = {}
    for relative in item["files"]:
        path = folder / relative
        if not path.is_file():
            raise DataError(f"the data file {relative} is not next to the script ({folder}): the steps read it")
        found[relative] = file_digest(path)
    return found


def _filesystem(root: str) -> tuple[Any, str]:
    """The fsspec file system of an object-store URI, and the URI's path (``bucket/prefix``) in it."""
    scheme, _, path = root.partition("://")
    protocol, distribution = FILESYSTEMS[scheme]
    try:
        import fsspec
    except ImportError:
        raise DataError(f"copying data files to {scheme}:// needs fsspec and {distribution}: "
                        f"pip install fsspec {distribution}") from None
    options: dict[str, Any] = {}
    if protocol == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or (
            DEFAULT_MINIO_ENDPOINT if scheme == "minio" else None)
        if endpoint:
            options["endpoint_url"] = endpoint
        options["config_kwargs"] = {"connect_timeout": 10, "read_timeout": 60, "retries": {"max_attempts": 2}}
    try:
        return fsspec.filesystem(protocol, **options), path
    except ImportError:
        raise DataError(f"copying data files to {scheme}:// needs {distribution}: pip install {distribution}") from None


def push(data: Mapping[str, Mapping[str, Any]], root: str, folder: Path,
         say: Callable[[str], None] = print) -> int:
    """Copy the data items that travel through the object store to ``root``/<digest>/; return how many files
    were sent. A file whose content changed since the conversion is a ``DataError``: the pipeline names
    the content it was converted with."""
    stored = {path: item for path, item in data.items() if item["via"] == "store"}
    if not stored:
        return 0
    for path, item in stored.items():
        if current_files(folder, item) != dict(item["files"]):
            raise DataError(f"{path} changed since the notebook was converted: convert it again so that the "
                            "pipeline reads the new content")
    filesystem, base = _filesystem(root)
    sent = 0
    for path, item in stored.items():
        for relative in item["files"]:
            target = f"{base}/{item['digest']}/{relative}"
            size = (folder / relative).stat().st_size
            try:
                if filesystem.exists(target) and filesystem.size(target) == size:
                    continue
                filesystem.put_file(str(folder / relative), target)
            except Exception as err:  # noqa: BLE001 - the store's client raises its own kinds
                raise DataError(f"copying {relative} to {root}/{item['digest']}/ failed: "
                                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
            sent += 1
            say(f"Copied {relative} ({size} bytes) to {root}/{item['digest']}/")
    return sent
