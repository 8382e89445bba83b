"""Compilation: a generated pipeline script turned into KFP IR YAML without leaving the process."""

from __future__ import annotations

import contextlib
import io
import runpy
import tempfile
from pathlib import Path
from typing import Any


def compile_script(script: str, parameters: dict[str, Any] | None = None, stem: str = "pipeline") -> str:
    """Run a generated script's module code and return its pipeline compiled to IR YAML text.

    ``parameters`` overrides parameter defaults, as ``-p NAME VALUE`` does. The script
    is written to a temporary directory so that kfp can read its functions' source.
    """
    with tempfile.TemporaryDirectory(prefix="nbconvert-kfp-compile-") as directory:
        path = Path(directory) / f"{stem}_pipeline.py"
        path.write_text(script, encoding="utf-8")
        output = path.with_suffix(".yaml")
        namespace = runpy.run_path(str(path), run_name="nbconvert_kfp_compiled_pipeline")
        with contextlib.redirect_stdout(io.StringIO()):
            namespace["compile_pipeline"](dict(parameters or {}), output)
        return output.read_text(encoding="utf-8")
