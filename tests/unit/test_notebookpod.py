"""Inside a Kubeflow notebook server: the steps default to the server's image, deployments to its namespace,
and its workspace volume is offered (mounted on request), read through the real kubernetes client from a
fake Kubernetes API on 127.0.0.1 (``fakekube``). Outside a server nothing changes and nothing is asked."""

from __future__ import annotations

import logging
import sys
import time

import pytest

import fakekube
from fakekube import CLAIM, DIGEST, IMAGE, NAMESPACE, POD, fake_kube  # noqa: F401 (fake_kube: the fixture)
from helpers import build_notebook, script_constant
from nbconvert_kfp.exporters import KFPExporter
from nbconvert_kfp.script.cluster import notebookpod
from notebookservercase import CELLS, PINNED
from notebookservercase import notebook_server, workspace  # noqa: F401 (the fixtures)

DEFAULT = f"python:{sys.version_info.major}.{sys.version_info.minor}"


class Lines(logging.Handler):
    """The conversion's log records, as (level, one-line message)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []

    def emit(self, record):
        self.records.append((record.levelno, record.getMessage()))

    def at(self, level: int) -> list[str]:
        return [message for found, message in self.records if found == level]






def convert(folder, metadata=None, **traits):
    """Convert the test notebook as ``jupyter nbconvert`` does (its folder in the resources); (script, log)."""
    lines = Lines()
    log = logging.getLogger(f"notebookpod-test-{id(lines)}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(lines)
    nb = build_notebook(CELLS, {"kubeflow_notebook": metadata} if metadata else None)
    script, _ = KFPExporter(log=log, **traits).from_notebook_node(nb, {"metadata": {"name": "nb",
                                                                                   "path": str(folder)}})
    return script, lines


def test_inside_a_notebook_server_steps_use_its_pinned_image_and_its_workspace_is_offered(notebook_server, workspace):
    script, log = convert(workspace)
    assert script_constant(script, "BASE_IMAGE") == PINNED
    [notice] = log.at(logging.INFO)[-1:]
    assert notice == (f"inside Kubeflow notebook server {NAMESPACE}/{POD}: steps use its image {PINNED}; --run and "
                      f"--upload default to its namespace {NAMESPACE}; its workspace volume {CLAIM} ({workspace}) is "
                      "not mounted into the steps (--KFPExporter.mount_workspace=True mounts it); note: "
                      f"{CLAIM} is ReadWriteOnce: steps scheduled on another node than the notebook server's cannot "
                      "mount it while the server runs")
    assert not log.at(logging.WARNING)
    assert "mount_pvc" not in script
    requests = [seen.path for seen in notebook_server.requests]
    assert requests == [f"/api/v1/namespaces/{NAMESPACE}/pods/{POD}",
                        f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/{CLAIM}"]



@pytest.mark.parametrize("traits, metadata", [
    ({"base_image": "registry.example.com/team/steps:4"}, None),
    ({}, {"base_image": "registry.example.com/team/steps:4"}),
    ({}, {"docker_image": "registry.example.com/team/steps:4"}),
], ids=["trait", "kale-2-metadata", "kale-1-metadata"])
def test_an_image_that_is_set_wins_and_the_pod_is_not_read(notebook_server, workspace, traits, metadata):
    script, log = convert(workspace, metadata, **traits)
    assert script_constant(script, "BASE_IMAGE") == "registry.example.com/team/steps:4"
    assert notebook_server.requests == []
    assert not log.at(logging.WARNING) and not [m for m in log.at(logging.INFO) if "notebook server" in m]


def test_mount_workspace_with_a_set_image_reads_the_pod_for_the_volume_only(notebook_server, workspace):
    notebook_server.add_claim(CLAIM, ["ReadWriteMany"])
    script, log = convert(workspace, base_image="registry.example.com/team/steps:4", mount_workspace=True)
    assert script_constant(script, "BASE_IMAGE") == "registry.example.com/team/steps:4"
    assert f'kubernetes.mount_pvc(load_task, pvc_name="{CLAIM}", mount_path="{workspace}")' in script
    [notice] = [m for m in log.at(logging.INFO) if "notebook server" in m]
    assert "steps use its image" not in notice and f"workspace volume {CLAIM} is mounted at {workspace}" in notice
    assert not log.at(logging.WARNING)  # ReadWriteMany: no note


def test_a_volume_set_at_the_workspace_mount_point_wins(notebook_server, workspace):
    volumes = [{"type": "pvc", "name": "other-claim", "mount_point": str(workspace)}]
    script, log = convert(workspace, {"volumes": volumes}, mount_workspace=True)
    assert f'pvc_name="other-claim", mount_path="{workspace}"' in script
    assert CLAIM not in script
    [notice] = [m for m in log.at(logging.INFO) if "notebook server" in m]
    assert f"its workspace volume {CLAIM} is not added: the volume other-claim at {workspace} is set" in notice


@pytest.mark.parametrize("trouble, expected", [
    ("refuse", "HTTP 403 Forbidden: pods \"analysis-0\" is forbidden: User \"system:serviceaccount:team-a:"
               "default-editor\" cannot get resource \"pods\" (the notebook server's service account needs to get "
               "pods and persistentvolumeclaims)"),
    ("no pod", "HTTP 404 Not Found"),
    ("down", "Connection refused"),
])
def test_a_pod_that_cannot_be_read_is_one_warning_and_the_usual_defaults(notebook_server, workspace, trouble, expected):
    if trouble == "refuse":
        notebook_server.refuse = True
    elif trouble == "no pod":
        notebook_server.objects.clear()
    else:
        notebook_server.stop()
    script, log = convert(workspace)
    assert script_constant(script, "BASE_IMAGE") == DEFAULT
    [warning] = log.at(logging.WARNING)
    assert warning.startswith(f"cannot read this Kubeflow notebook server's pod {NAMESPACE}/{POD} through the "
                              "Kubernetes API: ")
    assert expected in warning and warning.endswith("; its image and workspace volume are not used")
    assert fakekube.TOKEN not in warning and "\n" not in warning
    [notice] = [m for m in log.at(logging.INFO) if "notebook server" in m]
    assert notice.endswith(f": steps use the default image {DEFAULT}; --run and --upload default to its namespace "
                           f"{NAMESPACE}")


def test_a_silent_api_server_costs_one_bounded_wait(notebook_server, workspace, monkeypatch):
    monkeypatch.setattr(notebookpod, "TIMEOUT", 1.0)
    notebook_server.silent = True
    started = time.monotonic()
    script, log = convert(workspace)
    assert time.monotonic() - started < 4  # the fake server would hold the request for 30 s
    assert len(notebook_server.requests) == 1  # no retry
    assert script_constant(script, "BASE_IMAGE") == DEFAULT
    [warning] = log.at(logging.WARNING)
    assert "through the Kubernetes API: no answer within 1 s;" in warning


@pytest.mark.parametrize("missing", ["NB_PREFIX", "KUBERNETES_SERVICE_HOST", "token"])
def test_outside_a_notebook_server_nothing_changes_and_nothing_is_asked(notebook_server, workspace, monkeypatch,
                                                                        missing):
    if missing == "token":  # a Jupyter server on a laptop with NB_PREFIX set by hand
        (notebook_server.account / "token").unlink()
    else:
        monkeypatch.delenv(missing)
    script, log = convert(workspace)
    assert script_constant(script, "BASE_IMAGE") == DEFAULT
    assert notebook_server.requests == []
    assert not log.at(logging.WARNING) and not [m for m in log.at(logging.INFO) if "notebook server" in m]
    _, log = convert(workspace, mount_workspace=True)
    assert log.at(logging.WARNING) == [
        "KFPExporter.mount_workspace: the conversion does not run in a Kubeflow notebook server (NB_PREFIX and "
        "the in-cluster service account); no workspace volume is mounted"]
    assert notebook_server.requests == []


@pytest.mark.parametrize("image, image_id, expected", [
    ("jupyter:v1", "docker-pullable://docker.io/library/jupyter@" + DIGEST, f"jupyter:v1@{DIGEST}"),
    ("jupyter:v1", "docker.io/library/jupyter@" + DIGEST, f"jupyter:v1@{DIGEST}"),
    ("jupyter:v1", DIGEST, "jupyter:v1"),  # a local image id: no registry digest to pull by
    ("jupyter:v1", "", "jupyter:v1"),  # not started yet
    (f"jupyter@{DIGEST}", "docker.io/library/jupyter@sha256:" + "cd" * 32, f"jupyter@{DIGEST}"),
])
def test_the_image_is_pinned_to_the_digest_the_node_pulled(image, image_id, expected):
    assert notebookpod.pinned_image(image, image_id) == expected


def test_the_workspace_is_the_claim_mounted_deepest_above_the_notebook_else_at_home():
    pod = fakekube.notebook_pod("/home/jovyan")
    pod["spec"]["containers"][1]["volumeMounts"].append({"name": "project", "mountPath": "/home/jovyan/project"})
    pod["spec"]["volumes"].append({"name": "project", "persistentVolumeClaim": {"claimName": "project-claim"}})
    container = pod["spec"]["containers"][1]
    assert notebookpod.workspace_mount(pod, container, ["/home/jovyan/project/src"]) == ("project-claim",
                                                                                         "/home/jovyan/project")
    assert notebookpod.workspace_mount(pod, container, ["/home/jovyan/other"]) == (CLAIM, "/home/jovyan")
    assert notebookpod.workspace_mount(pod, container, ["/tmp", "/home/jovyan"]) == (CLAIM, "/home/jovyan")
    assert notebookpod.workspace_mount(pod, container, ["/home/jovyanx"]) is None






