"""Volumes: the notebook metadata's ``volumes`` list, read and rendered as kfp-kubernetes calls."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from ..codegen.literal import python_literal as lit
from ..errors import NotebookError
from ..model import Volume
from . import kubernetesgrammar as grammar

#: Kale 1.x ``volume_access_mode`` values.
ACCESS_MODES = {"rwo": "ReadWriteOnce", "rom": "ReadOnlyMany", "rwm": "ReadWriteMany", "rox": "ReadOnlyMany",
                "rwx": "ReadWriteMany", "rwop": "ReadWriteOncePod"}
#: Volume types a pipeline can apply.
TYPES = ("pvc", "new_pvc")

_ENV_INVALID = re.compile(r"[^A-Za-z0-9]+")


def volume_env_name(name: str) -> str:
    """Kale's environment variable for a volume's mount point: ``raw-data`` -> ``KALE_VOLUME_RAW_DATA``."""
    return "KALE_VOLUME_" + _ENV_INVALID.sub("_", name).strip("_").upper()


def parse_volume(entry: Any, index: int, metadata: dict[str, Any]) -> Volume:
    """Read one entry of ``kubeflow_notebook.volumes``; ``metadata`` gives Kale's notebook-wide defaults."""
    where = f"kubeflow_notebook.volumes[{index}]"
    if not isinstance(entry, dict):
        raise NotebookError(f"{where} must be an object with 'name', 'mount_point' and 'type'", None, "volumes")
    kind = entry.get("type") or "pvc"
    name = entry.get("name")
    mount = entry.get("mount_point")
    if kind not in TYPES:
        raise NotebookError(f"{where}: volume type {kind!r} is not supported (use 'pvc' for an existing "
                            "claim or 'new_pvc' to create one per run)", None, "volumes")
    if not isinstance(name, str) or not name or not isinstance(mount, str) or not mount.startswith("/"):
        raise NotebookError(f"{where} needs a 'name' and an absolute 'mount_point'", None, "volumes")
    problem = grammar.subdomain_problem(name)
    if problem:
        what = "claim name" if kind == "pvc" else "name (it ends the name of the claim each run creates)"
        raise NotebookError(f"{where}: the volume {what} {name!r} {problem}", None, name)
    steps = entry.get("steps")
    if steps is not None and not (isinstance(steps, list) and all(isinstance(s, str) for s in steps)):
        raise NotebookError(f"{where}: 'steps' must be a list of step names", None, "volumes")
    volume: Volume = {"type": kind, "name": name, "mount_point": mount, "steps": steps,
                      "env": volume_env_name(name) if entry.get("expose_as_env_var") else None}
    if kind == "new_pvc":
        size = entry.get("size", 1)
        unit = entry.get("size_type", "Gi")
        mode = entry.get("access_mode") or metadata.get("volume_access_mode") or "rwo"
        quantity = _size(size, unit, where)
        storage_class = entry.get("storage_class_name") or metadata.get("storage_class_name") or None
        problem = grammar.subdomain_problem(storage_class) if isinstance(storage_class, str) else (
            None if storage_class is None else "is not text")
        if problem:
            raise NotebookError(f"{where}: the storage class {storage_class!r} {problem}", None, "storage_class_name")
        for annotation in entry.get("annotations") or []:
            key = annotation.get("key") if isinstance(annotation, dict) else None
            problem = grammar.qualified_name_problem(key) if isinstance(key, str) and key else None
            if problem:
                raise NotebookError(f"{where}: the annotation key {key!r} {problem}", None, key)
        volume.update(
            size=quantity,
            access_modes=[ACCESS_MODES.get(str(mode).lower(), str(mode))],
            storage_class=storage_class,
            annotations={a["key"]: a["value"] for a in entry.get("annotations") or []
                         if isinstance(a, dict) and a.get("key")},
            keep=bool(entry.get("keep", False)),
        )
    return volume


def _size(size: Any, unit: Any, where: str) -> str:
    """The Kubernetes quantity of a new volume's ``size`` and ``size_type`` (``5`` and ``Gi`` -> ``5Gi``)."""
    if isinstance(size, bool) or not isinstance(size, (int, float, str)) or not isinstance(unit, str):
        raise NotebookError(f"{where}: size {size!r} {unit!r} is not a size such as 5 with size_type 'Gi'",
                            None, "size")
    text = str(size)
    quantity = f"{text}{unit}" if not isinstance(size, str) or text.isdigit() else text
    problem = grammar.quantity_problem(quantity)
    if problem:
        raise NotebookError(f"{where}: the volume size {quantity!r} {problem}", None, "size")
    return quantity


def parse_volumes(entries: list[tuple[int, Any]], metadata: dict[str, Any]) -> list[Volume]:
    """Read ``kubeflow_notebook.volumes`` (entries with their index); two volumes may not share a mount point."""
    volumes: list[Volume] = []
    mounted: dict[str, int] = {}
    for index, entry in entries:
        volume = parse_volume(entry, index, metadata)
        mount = posixpath.normpath(volume["mount_point"])
        if mount in mounted:
            raise NotebookError(f"kubeflow_notebook.volumes[{index}] and volumes[{mounted[mount]}] are both mounted "
                                f"at {mount!r}; give each volume its own mount_point", None, mount)
        mounted[mount] = index
        volumes.append(volume)
    return volumes


def mounts_into(volume: Volume, step: str) -> bool:
    """Whether the volume is mounted into ``step`` (every step unless its ``steps`` list says otherwise)."""
    return volume["steps"] is None or step in volume["steps"]


def mount_calls(volume: Volume, task: str, claim: str, created: str | None = None) -> list[str]:
    """Mount a volume into a task (``claim`` is the PVC name expression) and expose its path.

    ``created`` names the variable of a PVC the pipeline creates; a local run does not
    create it, so the mount is guarded.
    """
    mount = f"kubernetes.mount_pvc({task}, pvc_name={claim}, mount_path={lit(volume['mount_point'])})"
    calls = [f"if {created} is not None:\n        {mount}" if created else mount]
    if volume["env"]:
        calls.append(f"{task}.set_env_variable({lit(volume['env'])}, {lit(volume['mount_point'])})")
    return calls


def delete_calls(variable: str, tasks: list[str], name: str) -> list[str]:
    """Delete a per-run PVC once the steps that mount it have succeeded (a local run created none)."""
    after = f".after({', '.join(tasks)})" if tasks else ""
    return [f"if {variable} is not None:\n        kubernetes.DeletePVC(pvc_name={variable}.outputs[\"name\"]){after}"
            f".set_display_name({lit('delete volume ' + name)})"]


def create_calls(volume: Volume, variable: str) -> list[str]:
    """Create a per-run PVC for a ``new_pvc`` volume; it is never taken from KFP's cache."""
    arguments = [f"pvc_name_suffix={lit('-' + volume['name'])}",
                 f"access_modes={lit(volume['access_modes'])}", f"size={lit(volume['size'])}"]
    if volume["storage_class"]:
        arguments.append(f"storage_class_name={lit(volume['storage_class'])}")
    if volume["annotations"]:
        arguments.append(f"annotations={lit(volume['annotations'])}")
    # kfp.local cannot run CreatePVC (a cluster-side component): a local run creates no volume.
    return [f"{variable} = None if LOCAL_RUN else kubernetes.CreatePVC({', '.join(arguments)})",
            f"if {variable} is not None:\n        {variable}.set_caching_options(enable_caching=False)"]
