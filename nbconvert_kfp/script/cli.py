"""The generated script's command line: compile the pipeline, run it locally, deploy it, draw it.

A generated pipeline script carries this module (with the rest of ``nbconvert_kfp.script``)
and ends with ``sys.exit(main(globals()))``. ``main`` reads what the script defines,
by the names in :data:`SCRIPT_ATTRIBUTES`: the ``pipeline`` function, its name, description,
experiment, parameter types, the settings a local run cannot apply and the imports a local
run loads ahead; the pipeline's graph is read from the pipeline itself (``dag.Graph.from_pipeline``).
Uses the standard library and kfp only.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Mapping

from .local.localrun import LocalRun, LocalRunOptions
from .parametervalue import compiled_value, parse_value, type_name

#: What ``main`` reads from the script's namespace.
SCRIPT_ATTRIBUTES = ("pipeline", "PIPELINE_NAME", "PIPELINE_DESCRIPTION", "EXPERIMENT", "PARAMETER_TYPES",
                     "LOCAL_RUN", "LOCAL_IGNORED", "PRELOAD_IMPORTS")

#: The option that sets a pipeline parameter (``-p NAME VALUE``), in both its forms.
PARAMETER_OPTIONS = ("-p", "--parameter")


def parameter_options(argv: list[str]) -> tuple[list[list[str]], list[str]]:
    """The ``-p NAME VALUE`` pairs of a command line, taken as given, and the rest of it for argparse.

    argparse reads a value such as ``-1e-3`` or ``-x`` as an option and stops; here the two words after
    ``-p`` are its name and value, whatever they look like (a ``-p`` without both is left to argparse,
    which says what is missing, and so is everything after ``--``).
    """
    pairs: list[list[str]] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            rest += argv[index:]
            break
        if word in PARAMETER_OPTIONS and index + 2 < len(argv):
            pairs.append([argv[index + 1], argv[index + 2]])
            index += 3
            continue
        rest.append(word)
        index += 1
    return pairs, rest


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
                        + (", ".join(f"{n} ({type_name(t)})" for n, t in types.items()) or "none"))
    parser.add_argument("--workdir", type=Path, default=here,
                        help="with --local, the directory steps run in, against which the notebook's "
                        "relative paths resolve (default: this script's directory)")
    parser.add_argument("--pipeline-root", type=Path, default=None,
                        help="with --local, where step outputs are kept (default: WORKDIR/local_outputs)")
    # what --tune starts: a process that runs trials read from its input (trialworker); not for users
    parser.add_argument("--trial-worker", type=int, metavar="FD", help=argparse.SUPPRESS)
    parser.add_argument("--cold-start", action="store_true",
                        help="with --local, start every step in a new Python interpreter instead of "
                        "forking it from a warm process that has the notebook's imports loaded")
    parser.add_argument("--no-cache", action="store_true",
                        help="with --local, run every step (by default a step whose code, parameters and "
                        "inputs did not change since an earlier run reuses that run's outputs); with --upload "
                        "or --run, turn KFP's cache off for every step (such a pipeline is its own version)")
    parser.add_argument("--step", metavar="NAME",
                        help="with --local, run this step only, with the steps it needs (from the cache "
                        "when they did not change)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="with --local, show everything kfp.local and the steps print, as it happens "
                        "(by default it goes to each step's step.log)")
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
    parser.add_argument("--push-data", action="store_true",
                        help="copy the data files that travel through the object store to DATA_ROOT (--upload "
                        "and --run do it first); credentials and endpoint as for boto3 (AWS_* variables)")
    parser.add_argument("--run-name", help="with --run, the run's name (default: PIPELINE-DATE-TIME-XXXX)")
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
    tuning = parser.add_argument_group("hyperparameter tuning (the notebook's kubeflow_notebook.katib_metadata)")
    tuning.add_argument("--tune", action="store_true",
                        help="run the search on this machine: each trial is a --local run with its parameter values")
    tuning.add_argument("--parallel", type=_positive, metavar="N",
                        help="with --tune, trials at a time (default: parallelTrialCount, at most the CPU count)")
    tuning.add_argument("--seed", type=int, metavar="N",
                        help="with --tune, the seed of random choices (default: the algorithm's random_state, "
                        "else a random seed, printed)")
    tuning.add_argument("--max-trials", type=_positive, metavar="N",
                        help="with --tune, run at most N trials (default: maxTrialCount)")
    tuning.add_argument("--katib-experiment", type=Path, metavar="PATH",
                        help="write a Katib Experiment (YAML) that runs the search on a cluster; needs --katib-image")
    tuning.add_argument("--katib-image", metavar="IMAGE",
                        help="the trials' image: it holds this script, kfp and the notebook's libraries")
    tuning.add_argument("--katib-script", metavar="PATH",
                        help="where this script is in the image (default: /app/<this script's file name>)")
    tuning.add_argument("--katib-name", metavar="NAME", help="the Experiment's name (default: the pipeline's name)")
    tuning.add_argument("--katib-namespace", metavar="NS", help="the Experiment's namespace")
    tuning.add_argument("--katib-service-account", metavar="NAME", help="the trials' service account")
    tuning.add_argument("--katib-submit", action="store_true",
                        help="also create the Experiment with the Kubernetes API (needs the kubernetes package)")
    tuning.add_argument("--katib-metrics", action="store_true",
                        help="with --local, print the search's metrics as lines for Katib's metrics collector "
                        "(what a Katib trial runs)")
    pairs, argv = parameter_options(sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)
    args.parameter = pairs + args.parameter  # those argparse read: an abbreviation such as --param
    deploying = args.upload or args.run
    if args.local and deploying:
        parser.error("--local runs on this machine; it does not go with --upload or --run")
    local_only = [flag for flag, given in (("--step", args.step is not None), ("--verbose", args.verbose))
                  if given and not args.local]
    if local_only:
        parser.error(f"{', '.join(local_only)}: only with --local")
    if args.no_cache and not (args.local or deploying):
        parser.error("--no-cache: only with --local, --upload or --run")
    if args.cold_start and not (args.local or args.tune):
        parser.error("--cold-start: only with --local or --tune")
    if args.tune and (args.local or deploying):
        parser.error("--tune runs its own local trials; it does not go with --local, --upload or --run")
    if args.trial_worker is not None and not args.local:
        parser.error("--trial-worker: only with --local")
    if args.katib_metrics and not args.local:
        parser.error("--katib-metrics: only with --local")
    katib = [f"--{n.replace('_', '-')}" for n in ("katib_image", "katib_script", "katib_name", "katib_namespace",
                                                    "katib_service_account") if getattr(args, n) is not None]
    if args.katib_submit:
        katib.append("--katib-submit")
    if katib and args.katib_experiment is None:
        parser.error(f"{', '.join(katib)}: only with --katib-experiment")
    if args.katib_experiment is not None and not args.katib_image:
        parser.error("--katib-experiment needs --katib-image: the image that holds this script, kfp and the "
                     "notebook's libraries")
    unused_tuning = [f"--{n.replace('_', '-')}" for n in ("parallel", "seed", "max_trials")
                     if getattr(args, n) is not None and not args.tune]
    if unused_tuning:
        parser.error(f"{', '.join(unused_tuning)}: only with --tune")
    unused = [f"--{n.replace('_', '-')}" for n in ("host", "experiment", "namespace", "ca_cert")
              if getattr(args, n) is not None and not deploying]
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
        if not (args.local or args.tune):
            try:
                compiled_value(types[parameter], args.arguments[parameter])
            except ValueError as err:
                parser.error(f"parameter {parameter}: {err}; a --local run takes it")
    return args


def _print_katib_metrics(script: Mapping[str, Any], logged: Mapping[str, Any]) -> int:
    """Print the objective and additional metrics as Katib's collector reads them; 1 if the objective is missing."""
    from .tuning.katib import METRIC_LINE

    if not script.get("TUNING"):
        print("--katib-metrics: the notebook has no kubeflow_notebook.katib_metadata", file=sys.stderr)
        return 2
    objective = script["TUNING"]["objective"]
    pairs = [(objective["metric"], objective["variable"]), *objective["additional"]]
    for metric, variable in pairs:
        if variable in logged:
            print(METRIC_LINE.format(name=metric, value=repr(float(logged[variable]))), flush=True)
    if objective["variable"] not in logged:
        print(f"The run logged no metric {objective['variable']!r}, the search's objective.", file=sys.stderr)
        return 1
    return 0


def deploy(script: Mapping[str, Any], arguments: dict[str, Any], host: str | None, experiment: str | None,
           namespace: str | None, run: bool, ca_cert: str | None = None, *, wait: bool = False,
           timeout: float | None = None, interval: float = 5.0, run_name: str | None = None,
           caching: bool | None = None, follow_hint: str | None = None) -> int:
    """Compile the pipeline and upload it to KFP, unless a version of it already holds exactly this
    pipeline; with ``run`` start a run of that version (``arguments`` are the run's parameters),
    and with ``wait`` follow it to its end. Return the exit status (``monitor.EXIT_STATUS``)."""
    import tempfile

    from .cluster import deployment, monitor
    from .compiler import write_ir

    name = script["PIPELINE_NAME"]
    if push_data(script):
        return monitor.EXIT_ERROR
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


def push_data(script: Mapping[str, Any]) -> int:
    """Copy the script's data items that travel through the object store there; 1 (said) when that fails."""
    from .cluster import datastore

    data = script.get("DATA") or {}
    try:
        datastore.push(data, script.get("DATA_ROOT") or "", Path(script["__file__"]).resolve().parent,
                       say=lambda line: print(line, flush=True))
    except datastore.DataError as err:
        print(f"Data files: {err}", file=sys.stderr)
        return 1
    return 0


def _package_spec(package: Path) -> dict:
    """The compiled pipeline spec as the API returns it (kfp reads the YAML)."""
    from .cluster.deployment import _package_spec as read

    return read(str(package)) or {}


def watch(kfp_client, run_id: str, steps: list | None = None, *, timeout: float | None = None, interval: float = 5.0,
          follow_hint: str | None = None) -> int:
    """Follow a run to its end, print its metrics and how it ended; return the exit status."""
    from .cluster import deployment, monitor

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


def _search(script: Mapping[str, Any], option: str) -> Any:
    """The script's search, or ``None`` after saying that the notebook has none."""
    from .tuning.searchspace import Search

    if not script.get("TUNING"):
        print(f"{option}: the notebook has no hyperparameter search; give it kubeflow_notebook.katib_metadata "
              "(parameters, objective, algorithm) and convert it again", file=sys.stderr)
        return None
    return Search.from_data(script["TUNING"])


def tune(script: Mapping[str, Any], args: argparse.Namespace) -> int:
    """``--tune``: run the search's trials on this machine, print the table and the best trial."""
    from .tuning import tuner

    if _search(script, "--tune") is None:
        return 2
    fixed = {name: text for name, text in args.parameter}
    try:
        tuning = tuner.tune(script["__file__"], parallel=args.parallel, seed=args.seed, max_trials=args.max_trials,
                            parameters=fixed, workdir=args.workdir, pipeline_root=args.pipeline_root,
                            cold_start=args.cold_start)
    except tuner.TuningError as err:
        print(f"--tune: {err}", file=sys.stderr)
        return 2
    tuner.report(tuning, script["__file__"])
    if tuning.signal is not None:
        return 128 + tuning.signal
    return 0 if tuning.best() is not None else 1


def write_katib_experiment(script: Mapping[str, Any], args: argparse.Namespace) -> int:
    """``--katib-experiment``: write the Katib Experiment of the search, and with ``--katib-submit`` create it."""
    from .tuning import katib

    search = _search(script, "--katib-experiment")
    if search is None:
        return 2
    if args.parameter:
        print("--katib-experiment: -p does not apply; trials take the notebook's defaults for the parameters the "
              "search leaves alone", file=sys.stderr)
        return 2
    location = args.katib_script or f"/app/{Path(script['__file__']).name}"
    try:
        manifest = katib.experiment(search, script["PIPELINE_NAME"], image=args.katib_image, script=location,
                                    name=args.katib_name, namespace=args.katib_namespace,
                                    service_account=args.katib_service_account)
        katib.write(manifest, args.katib_experiment)
        print(f"Wrote {args.katib_experiment} (Katib Experiment {manifest['metadata']['name']!r}: "
              f"{search.algorithm}, {search.max_trials} trials, image {args.katib_image}, script {location})")
        if args.katib_submit:
            print(f"Created Katib Experiment {katib.submit(manifest, args.katib_namespace)}")
    except katib.KatibError as err:
        print(f"--katib-experiment: {err}", file=sys.stderr)
        return 1 if args.katib_submit else 2
    return 0


def main(script: Mapping[str, Any], argv: list[str] | None = None) -> int:
    """Compile the pipeline, run it locally with --local, or deploy it with --upload/--run."""
    from . import dag
    from .compiler import write_ir

    missing = [name for name in SCRIPT_ATTRIBUTES if name not in script]
    if missing:
        raise TypeError(f"not a generated pipeline script: it does not define {', '.join(missing)}")
    args = parse_arguments(script, argv)
    if args.dag:
        try:
            dag.check_format(args.dag)
        except dag.FormatError as err:
            print(f"--dag: {err}", file=sys.stderr)
            return 2
        dag.write(dag.Graph.from_pipeline(script["pipeline"]), args.dag)
        print(f"Wrote {args.dag}")
        if not (args.local or args.upload or args.run or args.tune or args.katib_experiment):
            return 0
    if args.katib_experiment is not None:
        status = write_katib_experiment(script, args)
        if status or not args.tune:
            return status
    if args.tune:
        return tune(script, args)
    if args.push_data and not (args.upload or args.run):
        status = push_data(script)
        if status or not (args.local or args.tune):
            return status
    if args.upload or args.run:
        from .cluster.redaction import redacted_output

        with redacted_output():  # what the KFP host says reaches the terminal without controls or secrets
            return deploy(script, args.arguments, args.host, args.experiment, args.namespace, args.run,
                          args.ca_cert, wait=args.wait, timeout=args.timeout, interval=args.interval,
                          run_name=args.run_name, caching=False if args.no_cache else None)
    if args.local:
        options = LocalRunOptions(arguments=args.arguments, workdir=args.workdir, pipeline_root=args.pipeline_root,
                                  warm=not args.cold_start, cache=not args.no_cache, step=args.step,
                                  verbose=args.verbose)
        if args.trial_worker is not None:
            from .tuning.trialworker import serve

            return serve(script, options, args.trial_worker)
        run = LocalRun(script, options)
        status = run.run()
        if args.katib_metrics and status == 0:
            return _print_katib_metrics(script, run.metrics)
        return status
    write_ir(script["pipeline"], args.output, args.arguments)
    print(f"Wrote {args.output}")
    stored = [path for path, item in (script.get("DATA") or {}).items() if item["via"] == "store"]
    if stored:
        print(f"{len(stored)} data item{'s' if len(stored) > 1 else ''} ({', '.join(stored)}) must be in "
              f"{script['DATA_ROOT']} before a run starts from this file: python {Path(script['__file__']).name} "
              "--push-data copies them (--upload and --run do it themselves)")
    return 0
