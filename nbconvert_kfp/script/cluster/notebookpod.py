"""Notebook pod: the Kubeflow notebook server a conversion or a deployment runs in, and what it offers the steps.

A Kubeflow notebook server is a pod whose notebook container has the ``NB_PREFIX`` environment
variable (Kubeflow's notebook controller sets it) and the Kubernetes service account mounted at
``/var/run/secrets/kubernetes.io/serviceaccount`` (``NBCONVERT_KFP_SERVICE_ACCOUNT_DIR`` names
another folder; the tests use it). Inside one:

- ``namespace()`` is the pod's namespace, from the service account's ``namespace`` file (no network);
- ``read()`` reads the pod through the Kubernetes API, with the in-cluster configuration of the
  ``kubernetes`` client kfp depends on: the notebook container's image, pinned to the digest the
  node pulled (``IMAGE@sha256:…``, from the container status's ``imageID``; the spec's image alone
  when the status has no registry digest), and the workspace volume: the claim mounted where the
  notebook is (else at ``$HOME``), with its access modes. Each request has ``TIMEOUT`` seconds to
  connect and as many to be answered, and is not retried; any failure is one warning line and a pod record without those fields.

Outside a notebook pod (``inside()`` is false) nothing here touches the network or imports
``kubernetes``. The module uses the standard library, and ``kubernetes`` inside ``read``.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

#: Where Kubernetes mounts a pod's service account (token, ca.crt, namespace), and the variable that moves it.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_ACCOUNT_DIR_ENV = "NBCONVERT_KFP_SERVICE_ACCOUNT_DIR"
#: The variable Kubeflow's notebook controller sets in a notebook server's container.
NOTEBOOK_ENV = "NB_PREFIX"
#: Seconds a request to the Kubernetes API may take to connect, then to be answered.
TIMEOUT = 2.0
#: Access modes that let a volume be mounted on one node only.
SINGLE_NODE_MODES = ("ReadWriteOnce", "ReadWriteOncePod")

_DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")


@dataclass(frozen=True)
class Workspace:
    """The notebook server's workspace volume: its claim, where the notebook container mounts it, its access modes
    (empty when the claim could not be read)."""

    claim: str
    mount_point: str
    access_modes: tuple[str, ...] = ()

    @property
    def single_node(self) -> bool:
        """Whether only pods on the notebook's node can mount the claim while the notebook server holds it."""
        return any(mode in SINGLE_NODE_MODES for mode in self.access_modes)


@dataclass(frozen=True)
class NotebookPod:
    """The notebook server's pod: its name and namespace, and, when the API could be read, its image and workspace."""

    name: str
    namespace: str
    image: str | None = None
    workspace: Workspace | None = None


def service_account_dir() -> Path:
    """The folder of the pod's service account."""
    return Path(os.environ.get(SERVICE_ACCOUNT_DIR_ENV) or SERVICE_ACCOUNT_DIR)


def inside() -> bool:
    """Whether this process runs in a Kubeflow notebook server's pod (environment and files only, no network)."""
    return bool(os.environ.get(NOTEBOOK_ENV) and os.environ.get("KUBERNETES_SERVICE_HOST")
                and (service_account_dir() / "token").is_file())


def namespace() -> str | None:
    """The notebook server's namespace, or None outside a notebook server."""
    if not inside():
        return None
    try:
        return (service_account_dir() / "namespace").read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def pinned_image(image: str, image_id: str | None) -> str:
    """``image`` pinned to the registry digest of the status's ``imageID`` (``repo@sha256:…``), when it has one."""
    found = _DIGEST.search(image_id or "")
    if "@" in image or found is None:
        return image
    return f"{image}@{found.group(1)}"


def _notebook_container(pod: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The notebook's container: the one with ``NB_PREFIX``, else the one named as the server, else the first."""
    containers = [c for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]
    for container in containers:
        if any(isinstance(e, dict) and e.get("name") == NOTEBOOK_ENV for e in container.get("env") or []):
            return container
    server = re.sub(r"-\d+$", "", name)  # the StatefulSet's pod NAME-0 runs container NAME
    return next((c for c in containers if c.get("name") == server), containers[0] if containers else None)


def _image(pod: dict[str, Any], container: dict[str, Any]) -> str | None:
    image = container.get("image")
    if not isinstance(image, str) or not image:
        return None
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    status = next((s for s in statuses if isinstance(s, dict) and s.get("name") == container.get("name")), {})
    return pinned_image(image, status.get("imageID"))


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def workspace_mount(pod: dict[str, Any], container: dict[str, Any], folders: Iterable[str]) -> tuple[str, str] | None:
    """(claim, mount point) of the claim mounted at the deepest point above the first of ``folders`` that has one."""
    claims = {v.get("name"): (v.get("persistentVolumeClaim") or {}).get("claimName")
              for v in (pod.get("spec") or {}).get("volumes") or [] if isinstance(v, dict)}
    mounts = [(m["mountPath"], claims[m.get("name")]) for m in container.get("volumeMounts") or []
              if isinstance(m, dict) and isinstance(m.get("mountPath"), str) and claims.get(m.get("name"))
              and not m.get("subPath")]
    for folder in folders:
        folder = posixpath.normpath(folder)
        around = sorted((m for m in mounts if _within(folder, posixpath.normpath(m[0]))), key=lambda m: -len(m[0]))
        if around:
            return around[0][1], posixpath.normpath(around[0][0])
    return None


def _timeout() -> tuple[float, float]:
    """The client's time limits: a pair, as the kubernetes client ignores a single float (it takes ints only)."""
    return (float(TIMEOUT), float(TIMEOUT))


def _reason(error: BaseException) -> str:
    """What went wrong, on one line, for the warning."""
    status = getattr(error, "status", None)
    if isinstance(status, int) and status:
        text = f"HTTP {status} {getattr(error, 'reason', '') or ''}".strip()
        try:
            message = json.loads(getattr(error, "body", None) or "{}").get("message")
        except (ValueError, AttributeError):
            message = None
        if isinstance(message, str) and message:
            text += f": {message}"
        if status in (401, 403):
            text += " (the notebook server's service account needs to get pods and persistentvolumeclaims)"
    else:
        cause = getattr(error, "reason", None)  # urllib3's MaxRetryError holds the connection's own error
        error = cause if isinstance(cause, BaseException) else error
        text = f"{type(error).__name__}: {error}"
        if "timed out" in text.lower() or "timeout" in type(error).__name__.lower():
            return f"no answer within {TIMEOUT:g} s"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


def read(folders: Iterable[str], log: logging.Logger | logging.LoggerAdapter) -> NotebookPod | None:
    """The notebook server's pod (None outside one); ``folders`` are where the notebook is, to find its workspace.

    A pod that cannot be read is one warning and a record with its name and namespace only.
    """
    space = namespace()
    if space is None:
        return None
    name = os.environ.get("HOSTNAME") or socket.gethostname()
    where = f"{space}/{name}"
    try:
        from kubernetes import client
        from kubernetes.config.incluster_config import InClusterConfigLoader

        configuration = client.Configuration()
        account = service_account_dir()
        InClusterConfigLoader(token_filename=str(account / "token"), cert_filename=str(account / "ca.crt"),
                              try_refresh_token=False).load_and_set(configuration)
        configuration.retries = False
        with client.ApiClient(configuration) as api_client:
            core = client.CoreV1Api(api_client)
            answer = core.read_namespaced_pod(name, space, _preload_content=False, _request_timeout=_timeout())
            pod = json.loads(answer.data)
            container = _notebook_container(pod, name)
            if container is None:
                log.warning("Kubeflow notebook server %s: its pod has no container; its image and workspace "
                            "volume are not used", where)
                return NotebookPod(name, space)
            mount = workspace_mount(pod, container, folders)
            workspace = None
            if mount is not None:
                workspace = Workspace(mount[0], mount[1], _access_modes(core, mount[0], space, log))
            return NotebookPod(name, space, _image(pod, container), workspace)
    except Exception as error:  # the client, urllib3 and the config loader raise many types; all end here
        log.warning("cannot read this Kubeflow notebook server's pod %s through the Kubernetes API: %s; its image "
                    "and workspace volume are not used", where, _reason(error))
        return NotebookPod(name, space)


def _access_modes(core: Any, claim: str, space: str, log: logging.Logger | logging.LoggerAdapter) -> tuple[str, ...]:
    """The claim's access modes (as bound, else as asked for); none when the claim cannot be read."""
    try:
        answer = core.read_namespaced_persistent_volume_claim(claim, space, _preload_content=False,
                                                              _request_timeout=_timeout())
        found = json.loads(answer.data)
    except Exception as error:  # as in read: one warning line
        log.warning("cannot read the workspace volume's claim %s/%s: %s", space, claim, _reason(error))
        return ()
    modes = (found.get("status") or {}).get("accessModes") or (found.get("spec") or {}).get("accessModes") or []
    return tuple(m for m in modes if isinstance(m, str))
