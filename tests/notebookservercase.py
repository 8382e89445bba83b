"""A notebook for the notebook-server tests, and the server's pinned image."""

from __future__ import annotations

import pytest

import fakekube
from fakekube import CLAIM, DIGEST, IMAGE

PINNED = f"{IMAGE}@{DIGEST}"

CELLS = [
    ("imports", "import math"),
    ("step:load", "data = [1.0, 2.0, 3.0]"),
    (["step:train", "prev:load"], "total = math.fsum(data)"),
    (["step:count", "prev:load", "image:python:3.12-slim"], "n = len(data)"),
]


@pytest.fixture
def workspace(tmp_path):
    """The notebook's folder, which the notebook server's workspace claim is mounted at."""
    folder = tmp_path / "jovyan"
    folder.mkdir()
    return folder

@pytest.fixture
def notebook_server(fake_kube, monkeypatch, workspace):
    """This process (and those it starts) as in a notebook server whose pod the fake API serves."""
    fake_kube.add_pod(fakekube.notebook_pod(str(workspace)))
    fake_kube.add_claim(CLAIM, ["ReadWriteOnce"])
    for name, value in fake_kube.environment().items():
        monkeypatch.setenv(name, value)
    return fake_kube
