"""The generated script's command line: compile the pipeline, run it locally, deploy it, draw it.

A generated pipeline script carries this module (with the rest of ``nbconvert_kfp.script``)
and ends with ``sys.exit(main(globals()))``. ``main`` reads what the script defines,
by the names in :data:`SCRIPT_ATTRIBUTES`: the ``pipeline`` function, its name, description,
experiment, parameter types, the settings a local run cannot apply, the imports a local
run loads ahead, and the pipeline's graph. Uses the standard library and kfp only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping

#: What ``main`` reads from the script's namespace.
SCRIPT_ATTRIBUTES = ("pipeline", "PIPELINE_NAME", "PIPELINE_DESCRIPTION", "EXPERIMENT", "PARAMETER_TYPES",
                     "LOCAL_RUN", "LOCAL_IGNORED", "PRELOAD_IMPORTS", "GRAPH")
#: The environment variable that makes an imported script define its steps for a local run (the script's
#: ``LOCAL_RUN`` is true when it is run with ``--local`` or this variable is "1"): they install nothing.
LOCAL_RUN_ENV = "NBCONVERT_KFP_LOCAL_RUN"

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def literal_text(value: Any) -> str:
    """A Python literal that reads back as ``value`` (non-finite floats as ``float('nan')`` and so on)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, (list, tuple, set)):
        items = [literal_text(item) for item in value]
        if isinstance(value, list):
            return "[" + ", ".join(items) + "]"
        if isinstance(value, tuple):
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        return "{" + ", ".join(items) + "}" if items else "set()"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal_text(k)}: {literal_text(v)}" for k, v in value.items()) + "}"
    return repr(value)


def papermill_value(text: str) -> Any:
    """A command-line value typed as papermill types ``-p`` values: a Python literal when the text is one
    (``3``, ``0.5``, ``True``, ``None``, ``[1, 2]``, ``(1, 'a')``), a float for ``nan`` and ``inf``, else
    the string itself."""
    import ast

    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return float(text) if text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity") else text
    except ValueError:
        return text


def parse_value(kind: type | str, text: str) -> Any:
    """Convert a command-line (or JSON string) value to a parameter type (``int``, ``float``, ``str``,
    ``bool``, ``list``, ``dict``, given as a type or its name, or ``literal``: any Python literal, typed as
    papermill does, passed on as its literal text); raise ``ValueError`` when it does not fit."""
    name = kind if isinstance(kind, str) else kind.__name__
    if name == "str":
        return text
    if name == "literal":
        return literal_text(papermill_value(text))
    if name == "bool":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if name in ("list", "dict"):
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError(f"expected a JSON {name}, got {text!r}") from None
        if not isinstance(value, list if name == "list" else dict):
            raise ValueError(f"expected a JSON {name}, got {text!r}")
        return value
    if name == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if name == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    raise ValueError(f"unknown parameter type {name!r}")


def duration_seconds(text: str) -> float:
    """Seconds from ``90``, ``1.5``, ``30s``, ``10m``, ``2h`` or ``1d`` (for argparse)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    factor = units.get(text[-1:], None)
    try:
        value = float(text[:-1] if factor else text) * (factor or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or a duration such as 30m or 2h, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration, got {text!r}")
    return value


def _type_name(kind: type | str) -> str:
    return kind if isinstance(kind, str) else kind.__name__


def parse_arguments(script: Mapping[str, Any], argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line of a generated script."""
    here = Path(script.get("__file__") or ".").resolve().parent
    name = script["PIPELINE_NAME"]
    types = script["PARAMETER_TYPES"]
    default_output = Path(script["__file__"]).resolve().with_suffix(".yaml") if script.get("__file__") else None
    parser = argparse.ArgumentParser(
        description=f"Compile the KFP pipeline {name!r} to IR YAML, run it locally, or deploy it.")
    parser.add_argument("--local", action="store_true",
                        help="run the pipeline on this machine with kfp.local instead of compiling it")
    parser.add_argument("--output", type=Path, default=default_output,
                        help="where to write the compiled YAML (default: next to this script)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="set a pipeline parameter; parameters: "
                        + (", ".join(f"{n} ({_type_name(t)})" for n, t in types.items()) or "none"))
    parser.add_argument("--workdir", type=Path, default=here,
                        help="with --local, the directory steps run in, against which the notebook's "
                        "relative paths resolve (default: this script's directory)")
    parser.add_argument("--pipeline-root", type=Path, default=None,
                        help="with --local, where step outputs are kept (default: WORKDIR/local_outputs)")
    parser.add_argument("--cold-start", action="store_true",
                        help="with --local, start every step in a new Python interpreter instead of "
                        "forking it from a warm process that has the notebook's imports loaded")
    parser.add_argument("--upload", action="store_true",
                        help="upload the pipeline to KFP; a pipeline of that name gets a new version")
    parser.add_argument("--run", action="store_true",
                        help="upload the pipeline to KFP (unless a version already holds it) and start a run of it")
    parser.add_argument("--wait", action="store_true",
                        help="with --run, follow the run: print each step's state as it changes, then the "
                        "metrics; exit 0 only when the run succeeds (3 failed, 4 canceled, 6 time limit)")
    parser.add_argument("--timeout", type=duration_seconds, metavar="DURATION",
                        help="with --wait, stop waiting after DURATION (seconds, or 30m, 2h); the run goes on")
    parser.add_argument("--interval", type=duration_seconds, default=5.0, metavar="DURATION",
                        help="with --wait, time between two polls of the run (default: 5s)")
    parser.add_argument("--run-name", help="with --run, the run's name (default: PIPELINE-DATE-TIME-XXXX)")
    parser.add_argument("--no-cache", action="store_true",
                        help="with --upload or --run, turn KFP's cache off for every step (such a pipeline "
                        "is its own version)")
    parser.add_argument("--host", help="with --upload or --run, the KFP API URL (default: $KF_PIPELINES_ENDPOINT, "
                        "else in-cluster or kube config); the token comes from $KF_PIPELINES_TOKEN, "
                        "$KF_PIPELINES_SA_TOKEN_PATH or wherever kfp.Client finds one")
    parser.add_argument("--experiment", help=f"with --run, the KFP experiment (default: {script['EXPERIMENT']})")
    parser.add_argument("--namespace", help="with --upload or --run, the user namespace (multi-user KFP)")
    parser.add_argument("--ca-cert", help="with --upload or --run, the CA certificate file that signed the "
                        "server's TLS certificate")
    parser.add_argument("--dag", type=Path, metavar="PATH",
                        help="write a picture of the pipeline to PATH: SVG, or Mermaid if PATH ends with "
                        ".mmd, or Markdown with a Mermaid diagram if it ends with .md")
    args = parser.parse_args(argv)
    deploying = args.upload or args.run
    if args.local and deploying:
        parser.error("--local runs on this machine; it does not go with --upload or --run")
    unused = [f"--{n.replace('_', '-')}" for n in ("host", "experiment", "namespace", "ca_cert")
              if getattr(args, n) is not None and not deploying]
    unused += ["--no-cache"] if args.no_cache and not deploying else []
    unused += [f"--{n.replace('_', '-')}" for n in ("wait", "run_name") if getattr(args, n) and not args.run]
    if unused:
        parser.error(f"{', '.join(unused)}: only with " + ("--run" if unused[-1] in ("--wait", "--run-name")
                                                          else "--upload or --run"))
    if args.timeout is not None and not args.wait:
        parser.error("--timeout: only with --wait")
    if args.output is None:
        args.output = Path(f"{name}.yaml")
    args.arguments = {}
    for parameter, text in args.parameter:
        if parameter not in types:
            parser.error(f"unknown parameter {parameter!r}; known: {', '.join(types) or 'none'}")
        try:
            args.arguments[parameter] = parse_value(types[parameter], text)
        except ValueError as err:
            parser.error(f"parameter {parameter}: {err}")
    return args


def run_local(script: Mapping[str, Any], arguments: dict[str, Any], workdir: Path, pipeline_root: Path | None,
              warm: bool = True) -> int:
    """Run the pipeline with kfp.local in this Python environment; return the exit status."""
    import warnings

    from kfp import local

    from . import launcher

    name = script["PIPELINE_NAME"]
    if not script["LOCAL_RUN"]:
        print(f"A local run needs the script's steps defined for it: run it as 'python SCRIPT --local', "
              f"or set {LOCAL_RUN_ENV}=1 before importing it.", file=sys.stderr)
        return 2
    # kfp.local warns once per task about settings it ignores; they are listed once below.
    warnings.filterwarnings("ignore", message=r".*have no effect in the current local runner")
    if not sys.stdout.isatty():  # kfp.local colours names and states: no escape codes in files and CI logs
        try:
            from kfp.local.logging_utils import Color

            for colour in ("CYAN", "GREEN", "RED", "MAGENTA", "RESET"):
                setattr(Color, colour, "")
        except (ImportError, AttributeError):
            pass
    if script["LOCAL_IGNORED"]:
        print("kfp.local does not apply these settings (they apply on a KFP cluster):")
        for line in script["LOCAL_IGNORED"]:
            print(f"  {line}")
    workdir = workdir.resolve()
    pipeline_root = (pipeline_root or workdir / "local_outputs").resolve()
    os.chdir(workdir)
    earlier = set(pipeline_root.glob(f"{name}-*")) if pipeline_root.is_dir() else set()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    try:
        with launcher.WarmLauncher(script["PRELOAD_IMPORTS"], enabled=warm):
            script["pipeline"](**arguments)
    except RuntimeError as err:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
        tasks = {step["task"]: step["name"] for step in script["GRAPH"]["steps"]}
        failed = [step for task, step in tasks.items() if f"'{task}'" in message]
        which = f"step {failed[0]!r}" if failed else "a step"
        print(f"Pipeline {name!r} failed: {which} failed; its log is above.", file=sys.stderr)
        return 1
    runs = sorted(set(pipeline_root.glob(f"{name}-*")) - earlier, key=lambda p: p.stat().st_mtime)
    run_dir = runs[-1] if runs else pipeline_root
    print(f"Pipeline {name!r} succeeded; outputs are in {run_dir}")
    reports = []
    for step in script["GRAPH"]["steps"]:
        outputs = _task_outputs(run_dir / step["task"])
        for metric, value in outputs.get(step.get("metrics"), {}).items():
            print(f"  metric {metric} = {value}")
        report = run_dir / step["task"] / step["report"] if step.get("report") else None
        if report is not None and report.is_file():
            page = report.with_name(report.name + ".html")
            page.write_bytes(report.read_bytes())
            reports.append(page)
    if reports:
        print("Step reports (open in a browser):")
    for page in reports:
        print(f"  {page}")
    return 0


def _task_outputs(task_dir: Path) -> dict[str, dict[str, Any]]:
    """Output artifact name -> its metadata, from the executor output a kfp.local task wrote."""
    try:
        data = json.loads((task_dir / "executor_output.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {name: (entry.get("artifacts") or [{}])[0].get("metadata") or {}
            for name, entry in (data.get("artifacts") or {}).items()}


def deploy(script: Mapping[str, Any], arguments: dict[str, Any], host: str | None, experiment: str | None,
           namespace: str | None, run: bool, ca_cert: str | None = None, *, wait: bool = False,
           timeout: float | None = None, interval: float = 5.0, run_name: str | None = None,
           caching: bool | None = None, follow_hint: str | None = None) -> int:
    """Compile the pipeline and upload it to KFP, unless a version of it already holds exactly this
    pipeline; with ``run`` start a run of that version (``arguments`` are the run's parameters),
    and with ``wait`` follow it to its end. Return the exit status (``monitor.EXIT_STATUS``)."""
    import tempfile

    from . import deployment, monitor
    from .compiler import write_ir

    name = script["PIPELINE_NAME"]
    with tempfile.TemporaryDirectory(prefix="kfp-upload-") as directory:
        package = Path(directory) / f"{name}.yaml"
        # A run carries its parameters; the version keeps the defaults, so it is reused across runs.
        write_ir(script["pipeline"], package, None if run else arguments, caching=caching)
        try:
            kfp_client = deployment.client(host, ssl_ca_cert=ca_cert)
            result = deployment.deploy(str(package), name, description=script["PIPELINE_DESCRIPTION"],
                                       experiment=experiment or script["EXPERIMENT"], namespace=namespace,
                                       start_run=run, params=arguments, reuse=True, run_name=run_name,
                                       kfp_client=kfp_client)
        except deployment.DeploymentError as err:
            print(f"Deployment failed: {err}", file=sys.stderr)
            return monitor.EXIT_ERROR
        steps = monitor.steps_of(_package_spec(package)) if wait else []
    for line in deployment.summary(result, name):
        print(line, flush=True)
    if not wait:
        return 0
    return watch(kfp_client, result["run_id"], steps, timeout=timeout, interval=interval, follow_hint=follow_hint)


def _package_spec(package: Path) -> dict:
    """The compiled pipeline spec as the API returns it (kfp reads the YAML)."""
    from .deployment import _package_spec as read

    return read(str(package)) or {}


def watch(kfp_client, run_id: str, steps: list | None = None, *, timeout: float | None = None, interval: float = 5.0,
          follow_hint: str | None = None) -> int:
    """Follow a run to its end, print its metrics and how it ended; return the exit status."""
    from . import deployment, monitor

    try:
        if steps is None:
            steps = monitor.steps_of(monitor.run_spec(kfp_client, monitor.get_run(kfp_client, run_id)))
        outcome, run, states = monitor.follow(kfp_client, run_id, steps, timeout=timeout, interval=interval,
                                              write=lambda line: print(line, flush=True))
    except deployment.DeploymentError as err:
        print(f"Following run {run_id} failed: {err}", file=sys.stderr)
        return monitor.EXIT_ERROR
    except KeyboardInterrupt:
        print(f"Stopped following run {run_id}; it goes on in KFP.", file=sys.stderr)
        return 130
    if outcome != "TIMEOUT":
        for line in monitor.metric_lines(kfp_client, steps, states):
            print(line)
    lines = monitor.outcome_lines(run_id, outcome, run, states, steps)
    stream = sys.stdout if outcome == "SUCCEEDED" else sys.stderr
    for line in lines:
        print(line, file=stream, flush=True)
    if outcome != "SUCCEEDED" and follow_hint:
        print(follow_hint.format(run_id=run_id), file=stream)
    return monitor.exit_status(outcome)


def main(script: Mapping[str, Any], argv: list[str] | None = None) -> int:
    """Compile the pipeline, run it locally with --local, or deploy it with --upload/--run."""
    from . import dag
    from .compiler import write_ir

    missing = [name for name in SCRIPT_ATTRIBUTES if name not in script]
    if missing:
        raise TypeError(f"not a generated pipeline script: it does not define {', '.join(missing)}")
    args = parse_arguments(script, argv)
    if args.dag:
        dag.write(dag.Graph.from_data(script["GRAPH"]), args.dag)
        print(f"Wrote {args.dag}")
        if not (args.local or args.upload or args.run):
            return 0
    if args.upload or args.run:
        return deploy(script, args.arguments, args.host, args.experiment, args.namespace, args.run, args.ca_cert,
                      wait=args.wait, timeout=args.timeout, interval=args.interval, run_name=args.run_name,
                      caching=False if args.no_cache else None)
    if args.local:
        return run_local(script, args.arguments, args.workdir, args.pipeline_root, warm=not args.cold_start)
    write_ir(script["pipeline"], args.output, args.arguments)
    print(f"Wrote {args.output}")
    return 0
