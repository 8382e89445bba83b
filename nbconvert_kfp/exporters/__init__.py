"""The nbconvert exporters: ``kfp`` (the pipeline script) and ``kfp_yaml`` (its compiled IR YAML)."""

from .kfp import KFPExporter
from .kfpyaml import KFPYAMLExporter, compile_script

__all__ = ["KFPExporter", "KFPYAMLExporter", "compile_script"]
