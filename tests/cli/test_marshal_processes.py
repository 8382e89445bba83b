"""Marshal in fresh interpreters: the standard library only until a value needs more; a step killed mid-write leaves nothing to load."""

from __future__ import annotations

import os

import pytest

from nbconvert_kfp import marshal
from nbconvert_kfp.marshal import MarshalError, resource_load, resource_save

IMPORT_PROBE = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("carried_marshal", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["carried_marshal"] = module
spec.loader.exec_module(module)
heavy = ["numpy", "pandas", "scipy", "sklearn", "joblib", "xgboost", "lightgbm", "torch", "keras",
         "tensorflow", "PIL", "dill", "nbconvert", "kfp", "nbconvert_kfp"]
after_import = [m for m in heavy if m in sys.modules]
module.resource_load(module.resource_save({"a": [1, 2.5]}, sys.argv[2]))
after_dict = [m for m in heavy if m in sys.modules]
print(json.dumps({"import": after_import, "dict": after_dict, "lazy": sorted(module.resource_save._lazy)}))
"""


CRASH_PROBE = r"""
import os, sys
sys.path.insert(0, sys.argv[3])
from nbconvert_kfp.marshal import resource_save

class Big:
    pass

@resource_save.register(Big)
def save_big(obj, stem):
    with open(stem + ".big", "wb") as fh:
        fh.write(b"half of the bytes")
        fh.flush()
        os._exit(3)  # the step is killed mid-write

resource_save(Big(), sys.argv[1])
"""


def test_marshal_imports_only_the_standard_library_until_a_value_needs_more(tmp_path):
    import json
    import subprocess
    import sys

    source = os.path.join(os.path.dirname(marshal.__file__), "marshal.py")
    result = subprocess.run([sys.executable, "-c", IMPORT_PROBE, source, str(tmp_path / "a")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["import"] == [] and report["dict"] == []
    assert set(report["lazy"]) >= {"numpy", "pandas", "scipy", "sklearn", "xgboost", "lightgbm", "torch",
                                   "keras", "tensorflow", "PIL"}


def test_a_step_killed_mid_write_leaves_no_value_to_load(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "artifact"
    resource_save({"old": "value"}, str(path))
    repo = os.path.dirname(os.path.dirname(marshal.__file__))
    result = subprocess.run([sys.executable, "-c", CRASH_PROBE, str(path), "x", repo], capture_output=True,
                            timeout=60)
    assert result.returncode == 3
    names = os.listdir(path)
    assert not any(n.startswith("value.") for n in names)  # neither the half-written nor the stale value
    assert any(n.startswith(marshal._PARTIAL) for n in names)
    with pytest.raises(MarshalError, match="no saved value"):
        resource_load(str(path))
    resource_save([1, 2], str(path))  # the next save clears the leftover
    assert os.listdir(path) == ["value.pkl"]
