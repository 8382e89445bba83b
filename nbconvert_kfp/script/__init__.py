"""What ships into the generated script: its command line, local runs, deployment and DAG picture.

A generated pipeline script carries these modules as a zip archive, so it runs where
only kfp is installed. They import the standard library and kfp only (kfp, and the
PyYAML and kubernetes packages kfp depends on, inside functions; optional Optuna only
in the function that needs it); a test checks the rule. The converter and the Jupyter server extension
import them from here too.

- ``cli``: the script's command line (``main``) and the parameter value parser;
- ``compiler``: the pipeline written as IR YAML;
- ``localrun``: a local run with kfp.local: quiet progress, the cache, one step, clean stops;
- ``progress``: the lines a local run shows as its steps start, finish or fail;
- ``undeclaredimport``: the modules a step of a local run imported that its cluster installs lack;
- ``launcher``: what kfp.local starts for each step of a local run (step logs, events, the warm
  process that forks the steps);
- ``datastore``: data files in a run (the notebook's own locally, the object store's copies on a cluster);
- ``deployment``: upload to a KFP cluster and start a run;
- ``notebookpod``: the Kubeflow notebook server the script or the converter runs in (its namespace, image
  and workspace volume);
- ``endpoint``: the KFP API URL read strictly and rebuilt from its checked parts;
- ``monitor``: a run followed from outside: run and step states, durations, metrics;
- ``redaction``: server text without terminal control sequences or secrets;
- ``transport``: every request to the KFP host bounded in time and size;
- ``silence``: kfp's prints dropped in one thread only;
- ``steplog``: a step's log from the KFP API server or the KFP UI's server;
- ``metadata``: metric values from ML Metadata over gRPC-web, as the KFP UI reads them;
- ``dag``: the pipeline's picture (SVG, Mermaid);
- ``tuning``: the hyperparameter search of the notebook's ``katib_metadata``, as typed records;
- ``search``: the search algorithms of a local tuning run (grid, random, Optuna's TPE);
- ``tuner``: local tuning (``--tune``): trials as local runs, several at a time, and the best one;
- ``trialworker``: the process that runs tuning trials one after another with one warm launcher;
- ``katib``: the Katib Experiment that runs the search on a cluster.
"""

from __future__ import annotations

from pathlib import Path

#: The modules the generated script carries, besides this package's ``__init__``.
MODULES = ("cli", "compiler", "dag", "datastore", "deployment", "endpoint", "katib", "launcher", "localrun",
           "metadata", "monitor", "notebookpod", "progress", "redaction", "search", "silence", "steplog",
           "transport", "trialworker", "tuner", "tuning", "undeclaredimport")


def sources() -> dict[str, str]:
    """Archive path -> source text of everything the generated script imports from nbconvert-kfp."""
    script = Path(__file__).parent
    package = script.parent
    files = {"nbconvert_kfp/__init__.py": package / "__init__.py",
             "nbconvert_kfp/script/__init__.py": script / "__init__.py"}
    files.update({f"nbconvert_kfp/script/{name}.py": script / f"{name}.py" for name in MODULES})
    return {path: file.read_text(encoding="utf-8") for path, file in files.items()}
