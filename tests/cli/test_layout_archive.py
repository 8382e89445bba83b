"""The shipped archives import in an interpreter without site-packages."""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from nbconvert_kfp import runtime, script
from nbconvert_kfp.codegen import archive

from helpers import PYTHON

ISOLATED = textwrap.dedent(r"""
    import importlib, sys
    sys.path.insert(0, sys.argv[1])
    for name in sys.argv[2].split(","):
        importlib.import_module(name)
    outside = sorted(m for m in sys.modules if m.partition(".")[0] not in sys.stdlib_module_names
                     and m.partition(".")[0] not in ("nbconvert_kfp", "__main__", "__mp_main__"))
    print("OUTSIDE", outside)
    print("FROM", sys.modules["nbconvert_kfp"].__file__)
""")


@pytest.mark.parametrize("package, modules", [
    (runtime, "nbconvert_kfp.runtime.step,nbconvert_kfp.runtime.marshal,nbconvert_kfp.runtime.report,"
              "nbconvert_kfp.marshal"),
    (script, "nbconvert_kfp.script.cli,nbconvert_kfp.script.compiler,nbconvert_kfp.script.dag,"
             "nbconvert_kfp.script.cluster.metadata,nbconvert_kfp.script.cluster.monitor,"
             "nbconvert_kfp.script.cluster.steplog,nbconvert_kfp.script.cluster.deployment,"
             "nbconvert_kfp.script.local.launcher,nbconvert_kfp.script.local.localrun,"
             "nbconvert_kfp.script.tuning.tuner,nbconvert_kfp.script.tuning.katib"),
], ids=["runtime", "script"])
def test_shipped_archive_imports_in_an_interpreter_without_site_packages(tmp_path, package, modules):
    """-I -S: no site-packages at all, so not even kfp; importing loads the standard library only."""
    path = tmp_path / "shipped.zip"
    # exactly what the generated code runs to unpack a payload
    namespace = {"target": str(path)}
    exec("\n".join(archive.writer_statements(archive.payload(package.sources()), "target", 0)), namespace)
    proc = subprocess.run([PYTHON, "-I", "-S", "-c", ISOLATED, str(path), modules], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "OUTSIDE []" in proc.stdout
    assert "shipped.zip" in proc.stdout
