"""Reserved names: the identifiers of a generated script that no step, parameter or variable may take.

:data:`SCRIPT_GLOBALS` is the one list of module-level names the script's template and the
component builder define or import; a test checks every generated script against it.
Python's builtins and keywords are reserved too, so a step named ``print`` or ``class``
gets an identifier of its own.
"""

from __future__ import annotations

import builtins
import keyword

#: Module-level names of a generated script.
SCRIPT_GLOBALS = frozenset({
    # imports
    "annotations", "os", "sys", "dsl", "kfp", "kubernetes", "NamedTuple",
    "Artifact", "ClassificationMetrics", "Dataset", "HTML", "Input", "Metrics", "Model", "Output",
    # constants and functions
    "PIPELINE_NAME", "PIPELINE_DESCRIPTION", "BASE_IMAGE", "EXPERIMENT", "PARAMETER_TYPES", "LOCAL_RUN",
    "LOCAL_IGNORED", "PRELOAD_IMPORTS", "PINS", "STEP_INSTALLS", "TUNING", "PIP_INDEX_URLS", "PIP_TRUSTED_HOSTS",
    "DATA", "DATA_ROOT", "INSTALLER", "INSTALL_KFP", "shlex", "Outputs",
    "installs", "data_input", "pipeline", "main", "_script_tools", "_step_runtime",
})
#: Names a component function uses for itself.
COMPONENT_LOCALS = frozenset({"step", "sys", "Step", "executor_input", "base64", "fh"})
#: Python's builtins and keywords.
PYTHON_NAMES = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
#: Every name a generated identifier must avoid at the script's module level.
RESERVED = SCRIPT_GLOBALS | PYTHON_NAMES
