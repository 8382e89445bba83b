"""The ``kfp_yaml`` exporter: a tagged notebook becomes the compiled KFP IR YAML.

That YAML is the file a user uploads in the KFP UI (*Upload pipeline*). The exporter
builds the pipeline script exactly as the ``kfp`` exporter does, then compiles it in
this process with :func:`compile_script`.
"""

from __future__ import annotations

import runpy
import tempfile
from pathlib import Path
from typing import Any

from traitlets import default

from ..errors import KFPExportError
from ..script.compiler import write_ir
from ..script.silence import silenced
from .kfp import KFPExporter


#: The most of a notebook's name a temporary file name takes (file names hold at most 255 bytes).
STEM_MAX = 100


def compile_script(script: str, parameters: dict[str, Any] | None = None, stem: str = "pipeline") -> str:
    """Run a generated script's module code and return its pipeline compiled to IR YAML text.

    ``parameters`` overrides parameter defaults, as ``-p NAME VALUE`` does. The script
    is written to a temporary directory so that kfp can read its functions' source.
    """
    with tempfile.TemporaryDirectory(prefix="nbconvert-kfp-compile-") as directory:
        path = Path(directory) / f"{stem[:STEM_MAX]}_pipeline.py"  # a file name has at most 255 bytes
        path.write_text(script, encoding="utf-8")
        namespace = runpy.run_path(str(path), run_name="nbconvert_kfp_compiled_pipeline")
        with silenced():
            output = write_ir(namespace["pipeline"], path.with_suffix(".yaml"), dict(parameters or {}))
        return output.read_text(encoding="utf-8")


class KFPYAMLExporter(KFPExporter):
    """Export a Kale-tagged notebook as Kubeflow Pipelines v2 IR YAML.

    A subclass of :class:`KFPExporter`: every ``KFPExporter.*`` option (pipeline
    name, image, volumes, packages, ...) applies to it too. The output is the file
    ``X_pipeline.py`` would write when run with no options: ``X_pipeline.yaml``.
    """

    export_from_notebook = "Kubeflow Pipeline (IR YAML)"
    # RFC 9512. JupyterLab only uses the mimetype as a choice of the raw cell format
    # list; the menu download is an attachment whatever the type.
    output_mimetype = "application/yaml"

    @default("file_extension")
    def _file_extension_default(self) -> str:
        return ".yaml"

    @default("template_extension")
    def _template_extension_default(self) -> str:
        return ".py.j2"  # the script's template; the YAML is compiled from the script

    @property
    def yaml_suffix(self) -> str:
        """The output's ending: the script's with ``.yaml`` for ``.py`` (``_pipeline.yaml``)."""
        stem = self.script_suffix[:-3] if self.script_suffix.endswith(".py") else self.script_suffix
        return stem + ".yaml"

    def from_notebook_node(self, nb: Any, resources: dict[str, Any] | None = None, **kw: Any):
        """Convert a notebook node into the pipeline's IR YAML text.

        A notebook the ``kfp`` exporter rejects raises the same ``KFPExportError``; a
        script that kfp cannot compile raises a ``KFPExportError`` too. No output then.
        """
        script, resources = super().from_notebook_node(nb, resources, **kw)
        try:
            output = compile_script(script)
        except KFPExportError:
            raise
        except Exception as exc:  # kfp's compiler errors have no common base class
            raise KFPExportError(
                f"kfp could not compile the generated pipeline to IR YAML: {type(exc).__name__}: {exc}"
            ) from exc
        resources["output_extension"] = self.yaml_suffix
        return output, resources
