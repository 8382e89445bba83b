"""Pipeline settings: exporter traits first, then the notebook's Kale metadata, then the Kubeflow notebook server
the conversion runs in (its image, its workspace volume), then defaults."""

from __future__ import annotations

import logging
import posixpath
import re
import sys
from typing import Any, Callable

from ..analysis import pipargument
from ..codegen.identifier import kfp_name
from ..errors import NotebookError
from ..model import Settings, Volume
from ..notebook.volume import parse_volume, parse_volumes
from ..script.cluster.notebookpod import NotebookPod

_PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")

#: Keys of ``metadata.kubeflow_notebook`` (Kale 0.x, 1.x, 2.x) and what happens to them.
APPLIED_KEYS = frozenset({
    "pipeline_name", "pipeline_description", "docker_image", "base_image", "experiment",
    "experiment_name", "volumes", "steps_defaults", "enable_caching", "storage_class_name",
    "volume_access_mode",
})
#: Kale's Katib keys: the component builder reads them (``--tune``, ``--katib-experiment``).
TUNING_KEYS = frozenset({"katib_run", "katib_metadata"})
#: Kale keys for Rok snapshots and its UI: read, reported, not applied.
UNAPPLIED_KEYS = frozenset({"autosnapshot", "snapshot_volumes", "kfp_host", "abs_working_dir", "deploy",
                            "kale_version"})


#: The line that tells what a conversion inside a Kubeflow notebook server takes from it (``nbconvert-kfp`` shows it).
POD_NOTICE = "inside Kubeflow notebook server %s: %s"


def _text(metadata: dict[str, Any], *keys: str) -> str | None:
    """First non-empty string among metadata keys (a dotted key reads a nested dict)."""
    for key in keys:
        value: Any = metadata
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value.strip():
            return value
    return None


def _rok_only(entry: Any, index: int, log: logging.Logger | logging.LoggerAdapter) -> bool:
    """Warn about the Rok parts of a Kale 1.x volume; tell whether the volume is left out (a ``clone``)."""
    if not isinstance(entry, dict):
        return False
    name = entry.get("name") or f"#{index}"
    if entry.get("type") == "clone":
        log.warning("kubeflow_notebook.volumes[%d]: volume %r is a Rok clone (Kale 1.x on Arrikto clusters), which "
                    "KFP cannot make; it is not mounted. To mount the claim it was cloned from, give it as "
                    "{\"type\": \"pvc\", \"name\": <claim>, \"mount_point\": %r}", index, name,
                    entry.get("mount_point") or "/path")
        return True
    if entry.get("snapshot"):
        log.warning("kubeflow_notebook.volumes[%d]: volume %r asks for a Rok snapshot, which is not taken "
                    "(snapshots need Rok)", index, name)
    return False


def _checked(options: dict[str, Any], name: str, check: Any) -> list[str]:
    """The list setting ``name``, each entry passed through ``check``; a bad entry is an error naming the setting."""
    values = options.get(name) or []
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise NotebookError(f"KFPExporter.{name} must be a list", None, name)
    checked = []
    for value in values:
        try:
            checked.append(check(value))
        except ValueError as error:
            raise NotebookError(f"KFPExporter.{name}: {error}", None, name) from None
    return checked


#: Object stores a data root may name: those a KFP launcher reads input artifacts from.
DATA_ROOT_SCHEMES = ("minio://", "s3://", "gs://")
#: Where data files too large to ride inside the pipeline go: a default KFP install's MinIO bucket.
DEFAULT_DATA_ROOT = "minio://mlpipeline/nbconvert-kfp/data"
_DATA_ROOT = re.compile(r"^(minio|s3|gs)://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?$")


def _data_root(value: str | None) -> str:
    """The ``data_root`` setting, checked: an object-store URI (``minio://``, ``s3://``, ``gs://``), or ''."""
    if value is None:
        return DEFAULT_DATA_ROOT
    root = value.rstrip("/")
    if root and not _DATA_ROOT.match(root):
        raise NotebookError(f"KFPExporter.data_root {value!r} is not an object-store URI such as "
                            "minio://BUCKET/PREFIX, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX", None, "data_root")
    return root


def _default_image() -> str:
    """The steps' image when none is set: python:<the converting Python's version>."""
    return f"python:{sys.version_info.major}.{sys.version_info.minor}"


def _with_workspace(pod: NotebookPod, volumes: list[Volume], mount: bool, metadata: dict[str, Any],
                    log: logging.Logger | logging.LoggerAdapter) -> tuple[list[Volume], str | None]:
    """The volumes, with the notebook server's workspace volume when ``mount`` asks for it; and what the
    notice says about that volume."""
    workspace = pod.workspace
    if workspace is None:
        if mount:
            log.warning("KFPExporter.mount_workspace: no workspace volume of the notebook server was found (a "
                        "volume claim mounted where the notebook is, or at $HOME); none is mounted")
        return volumes, None
    single_node = (f"{workspace.claim} is {'/'.join(workspace.access_modes)}: steps scheduled on another node than "
                   "the notebook server's cannot mount it while the server runs")
    if not mount:
        note = (f"its workspace volume {workspace.claim} ({workspace.mount_point}) is not mounted into the steps "
                "(--KFPExporter.mount_workspace=True mounts it)")
        return volumes, note + (f"; note: {single_node}" if workspace.single_node else "")
    taken = [v for v in volumes if posixpath.normpath(v["mount_point"]) == workspace.mount_point
             or (v["type"] == "pvc" and v["name"] == workspace.claim)]
    if taken:
        return volumes, (f"its workspace volume {workspace.claim} is not added: the volume {taken[0]['name']} at "
                         f"{taken[0]['mount_point']} is set for the steps")
    if workspace.single_node:
        log.warning("workspace volume %s", single_node)
    entry = {"type": "pvc", "name": workspace.claim, "mount_point": workspace.mount_point}
    return ([*volumes, parse_volume(entry, len(volumes), metadata)],
            f"its workspace volume {workspace.claim} is mounted at {workspace.mount_point} in every step")


def _notebook_pod_defaults(notebook_pod: Callable[[], NotebookPod | None] | None, image: str | None,
                           volumes: list[Volume], mount: bool, metadata: dict[str, Any],
                           log: logging.Logger | logging.LoggerAdapter) -> tuple[str | None, list[Volume]]:
    """The image and volumes, with what the Kubeflow notebook server the conversion runs in offers; the pod is
    read only when no image is set or ``mount`` asks for its workspace volume. One line tells what was taken."""
    if mount and notebook_pod is None:
        log.warning("KFPExporter.mount_workspace: the conversion does not run in a Kubeflow notebook server "
                    "(NB_PREFIX and the in-cluster service account); no workspace volume is mounted")
    pod = notebook_pod() if notebook_pod is not None and (image is None or mount) else None
    if pod is None:
        return image, volumes
    notes = []
    if image is None and pod.image:
        image = pod.image
        notes.append(f"steps use its image {image}")
    elif image is None:
        notes.append(f"steps use the default image {_default_image()}")
    notes.append(f"--run and --upload default to its namespace {pod.namespace}")
    volumes, volume_note = _with_workspace(pod, volumes, mount, metadata, log)
    log.info(POD_NOTICE, f"{pod.namespace}/{pod.name}", "; ".join([*notes, volume_note] if volume_note else notes))
    return image, volumes


def _switch(value: Any, key: str) -> bool | None:
    """A metadata switch: a bool, or the text of one ("false", "True", "yes", "0"; Kale's UI writes strings)."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise NotebookError(f"kubeflow_notebook.{key} must be true or false, not {str(value)[:60]!r}", None, key)


def resolve(options: dict[str, Any], metadata: dict[str, Any], notebook: str,
            log: logging.Logger | logging.LoggerAdapter,
            notebook_pod: Callable[[], NotebookPod | None] | None = None) -> Settings:
    """Resolve the pipeline settings; an option set to ``None`` was not given and never overrides.

    ``notebook_pod`` reads the Kubeflow notebook server the conversion runs in (None: not in one); it is
    called only when a setting needs it: no image was set, or ``mount_workspace`` asks for the workspace.
    """
    metadata = metadata if isinstance(metadata, dict) else {}
    unknown = sorted(set(metadata) - APPLIED_KEYS - UNAPPLIED_KEYS - TUNING_KEYS)
    if unknown:
        log.warning("notebook metadata kubeflow_notebook: unknown keys %s are ignored", ", ".join(unknown))
    unapplied = sorted(k for k in UNAPPLIED_KEYS & set(metadata) if metadata[k] not in (None, "", [], {}, False))
    if unapplied:
        log.warning("notebook metadata kubeflow_notebook: %s recognised but not applied (Rok, Kale's UI)",
                    ", ".join(unapplied))

    name = options.get("pipeline_name") or _text(metadata, "pipeline_name")
    if name is None:
        name = kfp_name(notebook)
    elif not _PIPELINE_NAME.match(name):
        fixed = kfp_name(name)
        log.warning("pipeline name %r is not a valid KFP name; using %r", name, fixed)
        name = fixed

    caching = options.get("enable_caching")
    if caching is None:
        caching = _switch(metadata.get("enable_caching"), "enable_caching")

    volumes = options.get("volumes")
    if volumes is None:
        volumes = metadata.get("volumes") or []
    if not isinstance(volumes, list):
        raise NotebookError("kubeflow_notebook.volumes must be a list", None, "volumes")

    defaults = options.get("steps_defaults")
    if defaults is None:
        defaults = metadata.get("steps_defaults") or []
    if not (isinstance(defaults, list) and all(isinstance(t, str) for t in defaults)):
        raise NotebookError("kubeflow_notebook.steps_defaults must be a list of tags such as "
                            "'label:team:ml'", None, "steps_defaults")

    image = options.get("base_image") or _text(metadata, "base_image", "docker_image")
    volumes = parse_volumes([(i, entry) for i, entry in enumerate(volumes) if not _rok_only(entry, i, log)], metadata)
    image, volumes = _notebook_pod_defaults(notebook_pod, image, volumes, bool(options.get("mount_workspace")),
                                            metadata, log)

    return {
        "name": name,
        "description": options.get("pipeline_description") or _text(metadata, "pipeline_description"),
        "base_image": image or _default_image(),
        "experiment": options.get("experiment") or _text(metadata, "experiment_name", "experiment.name")
        or "Default",
        "notebook": notebook,
        "enable_caching": caching,
        "volumes": volumes,
        "steps_defaults": list(defaults),
        "install_packages": options.get("install_packages", True),
        "extra_packages": _checked(options, "extra_packages", pipargument.requirement),
        "pip_index_urls": _checked(options, "pip_index_urls", pipargument.index_url),
        "pip_trusted_hosts": _checked(options, "pip_trusted_hosts", pipargument.trusted_host),
        "install_kfp_package": options.get("install_kfp_package", True),
        "step_reports": options.get("step_reports", True),
        "runtime": options.get("runtime") or "artifact",
        "data_files": options.get("data_files") or "auto",
        "data_root": _data_root(options.get("data_root")),
        "runtime_package": (_checked({"runtime_package": [options["runtime_package"]]}, "runtime_package",
                                     pipargument.requirement)[0] if options.get("runtime_package") else ""),
    }
