"""What ships into the generated script: its command line, local runs, deployment and DAG picture.

A generated pipeline script carries these modules as a zip archive, so it runs where
only kfp is installed. They import the standard library and kfp only (kfp, and the
PyYAML, kubernetes and protobuf packages kfp depends on, inside functions; optional Optuna only
in the function that needs it); a test checks the rule. The converter and the Jupyter server extension
import them from here too.

Modules by concept:

- ``cli``: the script's command line (``main``);
- ``parametervalue``: a parameter value read from text as its type, and checked for a compiled pipeline
  (the one parser and check of the script, the ``nbconvert-kfp`` command and the server API);
- ``compiler``: the pipeline written as IR YAML;
- ``dag``: the pipeline's picture (SVG, Mermaid);
- ``silence``: kfp's prints dropped in one thread only;
- ``exceptions``: ``ScriptError``, the root of the script tools' errors;
- ``local``: a local run with kfp.local (``localrun``, ``progress``, ``launcher``, ``undeclaredimport``);
- ``cluster``: a KFP cluster: deployment, the API endpoint, bounded requests, redaction, run monitoring,
  step logs, ML Metadata, the notebook server's pod and the run's data files (``deployment``, ``endpoint``,
  ``transport``, ``redaction``, ``monitor``, ``steplog``, ``metadata``, ``notebookpod``, ``datastore``);
- ``tuning``: hyperparameter search: the notebook's search space, local search algorithms, local tuning and
  its trial worker, Katib (``searchspace``, ``search``, ``tuner``, ``trialworker``, ``katib``).
"""

from __future__ import annotations

from pathlib import Path

#: The subpackages the generated script carries, each with its ``__init__``.
PACKAGES = ("local", "cluster", "tuning")
#: The modules the generated script carries (dotted below this package), besides the packages' ``__init__``.
MODULES = ("cli", "compiler", "dag", "exceptions", "parametervalue", "silence",
           "local.launcher", "local.localrun", "local.progress", "local.undeclaredimport",
           "cluster.datastore", "cluster.deployment", "cluster.endpoint", "cluster.metadata", "cluster.monitor",
           "cluster.notebookpod", "cluster.redaction", "cluster.steplog", "cluster.transport",
           "tuning.katib", "tuning.search", "tuning.searchspace", "tuning.trialworker", "tuning.tuner")


def sources() -> dict[str, str]:
    """Archive path -> source text of everything the generated script imports from nbconvert-kfp."""
    script = Path(__file__).parent
    package = script.parent
    files = {"nbconvert_kfp/__init__.py": package / "__init__.py",
             "nbconvert_kfp/script/__init__.py": script / "__init__.py"}
    files.update({f"nbconvert_kfp/script/{name}/__init__.py": script / name / "__init__.py" for name in PACKAGES})
    paths = {name: name.replace(".", "/") + ".py" for name in MODULES}
    files.update({f"nbconvert_kfp/script/{path}": script / path for path in paths.values()})
    return {path: file.read_text(encoding="utf-8") for path, file in files.items()}
