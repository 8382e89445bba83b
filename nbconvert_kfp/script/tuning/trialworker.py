"""Trial worker: one process that runs tuning trials one after another, as local runs sharing a warm launcher.

A trial started as a process of its own pays for an interpreter, kfp's import and a warm process before
its first step; the steps themselves often take less. ``python SCRIPT --local --trial-worker FD`` (what
:mod:`.tuner` starts, one per parallel slot) imports the script once and starts one
:class:`~.launcher.StepLauncher`, then reads trials from standard input, one JSON object a line::

    {"number": 3, "parameters": [["MAX_DEPTH", "2"], ...], "pipeline_root": "...", "cache_root": "...",
     "log": ".../trial-003/log.txt"}

and runs each as a local run (:class:`~.localrun.LocalRun`) with its own output folder and log, and the
cache folder all trials share, so the steps upstream of the searched parameters run once. After each
trial it writes one JSON line to file descriptor ``FD``: ``{"number", "status", "metrics", "message",
"outputs"}`` (``status`` as ``--local`` exits). It ends at the end of its input, and on SIGTERM or SIGINT
stops the running trial's steps and its warm process. Standard library and kfp only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Mapping

from ..local.launcher import StepLauncher
from ..local.localrun import Interrupted, LocalRun, LocalRunOptions
from ..parametervalue import parse_value


def _stop(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _arguments(script: Mapping[str, Any], pairs: list[list[str]]) -> dict[str, Any]:
    """The typed values of ``-p NAME TEXT`` pairs; ``ValueError`` names a parameter that is unknown or bad."""
    types = script["PARAMETER_TYPES"]
    arguments: dict[str, Any] = {}
    for name, text in pairs:
        if name not in types:
            raise ValueError(f"unknown parameter {name!r}; known: {', '.join(types) or 'none'}")
        try:
            arguments[name] = parse_value(types[name], text)
        except ValueError as err:
            raise ValueError(f"parameter {name}: {err}") from None
    return arguments


def _trial(script: Mapping[str, Any], base: LocalRunOptions, request: Mapping[str, Any],
           launcher: StepLauncher) -> dict[str, Any]:
    """Run one trial; its result line."""
    result: dict[str, Any] = {"number": request["number"], "status": 1, "metrics": {}, "message": "",
                              "outputs": None}
    with open(request["log"], "w", encoding="utf-8", errors="backslashreplace", buffering=1) as log:
        try:
            arguments = _arguments(script, request["parameters"])
        except ValueError as err:
            log.write(f"{err}\n")
            result.update(status=2, message=str(err))
            return result
        options = LocalRunOptions(arguments=arguments, workdir=base.workdir,
                                  pipeline_root=Path(request["pipeline_root"]),
                                  cache_root=Path(request["cache_root"]) if request.get("cache_root") else None,
                                  warm=base.warm, cache=base.cache, verbose=False)
        run = LocalRun(script, options, stdout=log, stderr=log, launcher=launcher)
        try:
            result["status"] = run.run()
        except Interrupted:
            raise
        except Exception as err:  # the trial fails, the worker goes on with the next one
            message = " ".join(f"{type(err).__name__}: {err}".split())
            log.write(f"{message}\n")
            result["message"] = message
        result["metrics"] = {name: value for name, value in run.metrics.items()
                             if isinstance(value, (int, float)) and not isinstance(value, bool)}
        result["outputs"] = str(run.run_dir) if run.run_dir else None
    return result


def serve(script: Mapping[str, Any], base: LocalRunOptions, results_fd: int) -> int:
    """Run the trials read from standard input, writing each one's result line to ``results_fd``."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    results = os.fdopen(results_fd, "w", encoding="utf-8", buffering=1)
    try:
        with StepLauncher(script["PRELOAD_IMPORTS"], warm=base.warm, verbose=False) as launcher:
            for line in sys.stdin:
                if not line.strip():
                    continue
                results.write(json.dumps(_trial(script, base, json.loads(line), launcher)) + "\n")
    except Interrupted as stopped:
        return 128 + stopped.signum
    finally:
        results.close()
    return 0
