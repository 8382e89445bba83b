"""A marshal backend registered from the notebook applies in every step of a local run."""

from __future__ import annotations

import subprocess
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from helpers import JUPYTER


REGISTRATION = '''\
from nbconvert_kfp.marshal import resource_save, resource_load

@resource_save.register(r"fractions\\.Fraction")
def save_fraction(obj, stem):
    with open(stem + ".fraction.txt", "w") as fh:
        fh.write(f"{obj.numerator}/{obj.denominator}")
    return stem + ".fraction.txt"

@resource_load.register(r".*\\.fraction\\.txt")
def load_fraction(path):
    from fractions import Fraction
    with open(path) as fh:
        return Fraction(fh.read())
'''


def test_backend_registered_in_a_functions_cell_is_used_between_steps(tmp_path):
    nb = new_notebook(cells=[
        new_code_cell("from fractions import Fraction", metadata={"tags": ["imports"]}),
        new_code_cell(REGISTRATION, metadata={"tags": ["functions"]}),
        new_code_cell("third = Fraction(1, 3)", metadata={"tags": ["step:make"]}),
        new_code_cell("print('TWO_THIRDS', third * 2, type(third).__name__)",
                      metadata={"tags": ["step:use", "prev:make"]}),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, tmp_path / "frac.ipynb")
    subprocess.run([str(JUPYTER), "nbconvert", "--to", "kfp", "frac.ipynb"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    proc = subprocess.run([sys.executable, "frac_pipeline.py", "--local", "--verbose"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "TWO_THIRDS 2/3 Fraction" in proc.stdout
    saved = list((tmp_path / "local_outputs").glob("*/make/third_out/value.*"))
    assert [p.name for p in saved] == ["value.fraction.txt"]
    assert saved[0].read_text() == "1/3"
