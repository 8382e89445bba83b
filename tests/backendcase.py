"""Round trips through a marshal backend, for the backend tests of every tier."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from nbconvert_kfp import marshal
from nbconvert_kfp.marshal import resource_load, resource_save


def need(module: str, reason: str = "`make test` installs it with the test extra"):
    """Import ``module`` or skip the test, saying which library is missing."""
    return pytest.importorskip(module, reason=f"{module} is not installed ({reason})")


def roundtrip(obj, directory=None):
    """Save ``obj`` into a fresh artifact directory, load it back; return (loaded, format)."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = os.path.join(tmp, "artifact")
        written = resource_save(obj, path)
        assert os.listdir(path) == [os.path.basename(written)]
        return resource_load(path, format=marshal.format_of(written)), marshal.format_of(written)


class FakeArtifact:
    def __init__(self, path):
        self.path = str(path)
        self.metadata = {}


def classification_data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    return X, (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(np.float64)
