"""Pipeline settings: exporter traits first, then the notebook's Kale metadata, then defaults."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from .errors import NotebookError
from .naming import kfp_name

_PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
_ENV_INVALID = re.compile(r"[^A-Za-z0-9]+")

#: Keys of ``metadata.kubeflow_notebook`` (Kale 0.x, 1.x, 2.x) and what happens to them.
APPLIED_KEYS = frozenset({
    "pipeline_name", "pipeline_description", "docker_image", "base_image", "experiment",
    "experiment_name", "volumes", "steps_defaults", "enable_caching", "storage_class_name",
    "volume_access_mode",
})
#: Kale keys for Katib, Rok snapshots and its UI: read, reported, not applied.
UNAPPLIED_KEYS = frozenset({"katib_run", "katib_metadata", "autosnapshot", "snapshot_volumes", "kfp_host",
                            "abs_working_dir", "deploy", "kale_version"})
#: Kale 1.x ``volume_access_mode`` values.
ACCESS_MODES = {"rwo": "ReadWriteOnce", "rom": "ReadOnlyMany", "rwm": "ReadWriteMany", "rox": "ReadOnlyMany",
                "rwx": "ReadWriteMany", "rwop": "ReadWriteOncePod"}


def volume_env_name(name: str) -> str:
    """Kale's environment variable for a volume's mount point: ``raw-data`` -> ``KALE_VOLUME_RAW_DATA``."""
    return "KALE_VOLUME_" + _ENV_INVALID.sub("_", name).strip("_").upper()


def _text(metadata: dict[str, Any], *keys: str) -> str | None:
    """First non-empty string among metadata keys (a dotted key reads a nested dict)."""
    for key in keys:
        value: Any = metadata
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value.strip():
            return value
    return None


def _volume(entry: Any, index: int, metadata: dict[str, Any]) -> dict[str, Any]:
    where = f"kubeflow_notebook.volumes[{index}]"
    if not isinstance(entry, dict):
        raise NotebookError(f"{where} must be an object with 'name', 'mount_point' and 'type'", None, "volumes")
    kind = entry.get("type") or "pvc"
    name = entry.get("name")
    mount = entry.get("mount_point")
    if kind not in ("pvc", "new_pvc"):
        raise NotebookError(f"{where}: volume type {kind!r} is not supported (use 'pvc' for an existing "
                            "claim or 'new_pvc' to create one per run)", None, "volumes")
    if not isinstance(name, str) or not name or not isinstance(mount, str) or not mount.startswith("/"):
        raise NotebookError(f"{where} needs a 'name' and an absolute 'mount_point'", None, "volumes")
    steps = entry.get("steps")
    if steps is not None and not (isinstance(steps, list) and all(isinstance(s, str) for s in steps)):
        raise NotebookError(f"{where}: 'steps' must be a list of step names", None, "volumes")
    volume = {"type": kind, "name": name, "mount_point": mount, "steps": steps,
              "env": volume_env_name(name) if entry.get("expose_as_env_var") else None}
    if kind == "new_pvc":
        size = entry.get("size", 1)
        unit = entry.get("size_type", "Gi")
        mode = entry.get("access_mode") or metadata.get("volume_access_mode") or "rwo"
        volume.update(
            size=f"{size}{unit}" if not isinstance(size, str) or size.isdigit() else size,
            access_modes=[ACCESS_MODES.get(str(mode).lower(), str(mode))],
            storage_class=entry.get("storage_class_name") or metadata.get("storage_class_name") or None,
            annotations={a["key"]: a["value"] for a in entry.get("annotations") or []
                         if isinstance(a, dict) and a.get("key")},
        )
    return volume


def resolve(options: dict[str, Any], metadata: dict[str, Any], notebook: str,
            log: logging.Logger | logging.LoggerAdapter) -> dict[str, Any]:
    """Resolve the pipeline settings; an option set to ``None`` was not given and never overrides."""
    metadata = metadata if isinstance(metadata, dict) else {}
    unknown = sorted(set(metadata) - APPLIED_KEYS - UNAPPLIED_KEYS)
    if unknown:
        log.warning("notebook metadata kubeflow_notebook: unknown keys %s are ignored", ", ".join(unknown))
    unapplied = sorted(k for k in UNAPPLIED_KEYS & set(metadata) if metadata[k] not in (None, "", [], {}, False))
    if unapplied:
        log.warning("notebook metadata kubeflow_notebook: %s recognised but not applied (Katib, Rok)",
                    ", ".join(unapplied))

    name = options.get("pipeline_name") or _text(metadata, "pipeline_name")
    if name is None:
        name = kfp_name(notebook)
    elif not _PIPELINE_NAME.match(name):
        fixed = kfp_name(name)
        log.warning("pipeline name %r is not a valid KFP name; using %r", name, fixed)
        name = fixed

    caching = options.get("enable_caching")
    if caching is None and isinstance(metadata.get("enable_caching"), bool):
        caching = metadata["enable_caching"]

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

    return {
        "name": name,
        "description": options.get("pipeline_description") or _text(metadata, "pipeline_description"),
        "base_image": options.get("base_image") or _text(metadata, "base_image", "docker_image")
        or f"python:{sys.version_info.major}.{sys.version_info.minor}",
        "experiment": options.get("experiment") or _text(metadata, "experiment_name", "experiment.name")
        or "Default",
        "notebook": notebook,
        "enable_caching": caching,
        "volumes": [_volume(entry, i, metadata) for i, entry in enumerate(volumes)],
        "steps_defaults": list(defaults),
        "install_packages": options.get("install_packages", True),
        "extra_packages": list(options.get("extra_packages") or []),
        "pip_index_urls": list(options.get("pip_index_urls") or []),
        "reports": options.get("step_reports", True),
    }
