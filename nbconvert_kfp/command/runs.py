"""Run subcommands: what happened to a run on the cluster (status, logs, list), through kfp.Client.

The steps of a run are the tasks of its pipeline spec; their states, times and pods come from
the run's task details, metrics from ML Metadata, logs from the endpoints ``steplog`` tries.
"""

from __future__ import annotations

import argparse
import sys

from .subcommand import CommandError, Subcommand, add_cluster, connect


def _read(kfp_client, run_id: str):
    """The run, its steps and their states."""
    from ..script.cluster import deployment, monitor

    try:
        run = monitor.get_run(kfp_client, run_id)
        steps = monitor.steps_of(monitor.run_spec(kfp_client, run))
    except deployment.DeploymentError as error:
        raise CommandError(str(error)) from None
    return run, steps, monitor.step_states(run, steps)


def _run_id_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID", help="the run's id (printed by 'nbconvert-kfp run' and 'list')")
    add_cluster(parser)


def _status(args: argparse.Namespace) -> int:
    from ..script.cluster import monitor

    kfp_client = connect(args)
    run, steps, states = _read(kfp_client, args.run_id)
    state = monitor.state_name(run.state)
    took = monitor.duration(run.created_at, run.finished_at)
    created = monitor.aware_time(run.created_at)
    print(f"Run {monitor.printable(run.run_id)} ({monitor.printable(run.display_name or 'unnamed')}): {state}"
          + (f", took {took}" if took else f", created {created:%Y-%m-%d %H:%M:%S %Z}" if created else ""))
    for step in steps:
        current = states.get(step.name)
        print(monitor.step_line(current) if current else f"  step {monitor.printable(step.name)}: not started")
    for line in monitor.metric_lines(kfp_client, steps, states):
        print(line)
    if state in ("FAILED", "ERROR") and monitor.error_message(run.error):
        print(f"  error: {monitor.error_message(run.error)}")
    return 0


def _logs_arguments(parser: argparse.ArgumentParser) -> None:
    _run_id_arguments(parser)
    parser.add_argument("step", nargs="?", metavar="STEP", help="the step whose log to print (default: every step)")


def _namespace(kfp_client, run, given: str | None) -> str | None:
    """The run's namespace: the one given, else its experiment's (multi-user KFP)."""
    if given:
        return given
    try:
        return kfp_client.get_experiment(experiment_id=run.experiment_id).namespace or None
    except Exception:  # no namespace is still a question the log endpoints can answer
        return None


def _logs(args: argparse.Namespace) -> int:
    from ..script.cluster import steplog

    kfp_client = connect(args)
    run, steps, states = _read(kfp_client, args.run_id)
    names = [step.name for step in steps]
    if args.step is not None and args.step not in names:
        raise CommandError(f"run {run.run_id} has no step {args.step!r}; steps: {', '.join(names) or 'none'}", 2)
    chosen = [args.step] if args.step is not None else [name for name in names if name in states]
    namespace = _namespace(kfp_client, run, args.namespace)
    for name in chosen:
        state = states.get(name)
        if state is None or not state.log_pods:
            print(f"==> step {name}: no log yet (the step has {'no pod' if state else 'not started'}) <==")
            continue
        for pod in state.log_pods:
            try:
                text = steplog.read(kfp_client, run.run_id, pod, namespace)
            except steplog.LogUnavailable as error:
                raise CommandError(str(error)) from None
            if len(chosen) > 1 or len(state.log_pods) > 1:
                print(f"==> step {name} ({state.state}, pod {pod}) <==")
            sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", nargs="?", metavar="NOTEBOOK",
                        help="list the runs of this notebook's pipeline")
    parser.add_argument("--pipeline", help="list the runs of the pipeline of this name")
    parser.add_argument("--all", action="store_true", help="list the runs of every pipeline")
    parser.add_argument("--limit", type=int, default=20, help="how many runs, newest first (default: 20)")
    add_cluster(parser)


#: Pages of runs read at most when looking for one pipeline's runs.
_MAX_PAGES = 10


def _pipeline_name(args: argparse.Namespace) -> str:
    from pathlib import Path

    from . import notebook

    if args.pipeline:
        return args.pipeline
    return notebook.load(notebook.convert(Path(args.notebook)))["PIPELINE_NAME"]


def _list(args: argparse.Namespace) -> int:
    from ..script.cluster import deployment, monitor

    given = sum(bool(x) for x in (args.notebook, args.pipeline, args.all))
    if given != 1:
        raise CommandError("give a NOTEBOOK, --pipeline NAME or --all", 2)
    if args.limit < 1:
        raise CommandError("--limit must be at least 1", 2)
    name = None if args.all else _pipeline_name(args)
    kfp_client = connect(args)
    host, token = deployment._host(kfp_client), deployment._token(kfp_client)
    found, token_page = [], ""
    with deployment._step("listing runs", host, token):
        pipeline_id = deployment._pipeline_id(kfp_client, name, args.namespace) if name else None
        if name and pipeline_id is None:
            raise deployment.DeploymentError(f"no pipeline is named {name!r} on the server")
        for _ in range(_MAX_PAGES):
            page = kfp_client.list_runs(page_token=token_page, page_size=100 if name else args.limit,
                                        sort_by="created_at desc", namespace=args.namespace)
            for run in page.runs or []:
                if not (isinstance(getattr(run, "run_id", None), str) and run.run_id):
                    raise deployment.MalformedAnswer("the list of runs has a run without a run_id")
                reference = run.pipeline_version_reference
                if pipeline_id is None or (reference is not None and reference.pipeline_id == pipeline_id):
                    found.append(run)
            token_page = page.next_page_token if isinstance(page.next_page_token, str) else ""
            if len(found) >= args.limit or not token_page:
                break
    if not found:
        print("No runs." if args.all else f"No runs of pipeline {name!r}.")
        return 0
    rows = [("RUN ID", "STATE", "CREATED", "DURATION", "NAME")]
    for run in found[:args.limit]:
        created = monitor.aware_time(run.created_at)
        rows.append((monitor.printable(run.run_id), monitor.state_name(run.state),
                     f"{created:%Y-%m-%d %H:%M:%S}" if created else "",
                     monitor.duration(run.created_at, run.finished_at) or "", monitor.printable(run.display_name or "")))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    return 0


STATUS = Subcommand("status", "a run's state, each step's state and duration, and its metrics",
                    _run_id_arguments, _status)
LOGS = Subcommand("logs", "the logs of a run's steps, or of one step", _logs_arguments, _logs)
LIST = Subcommand("list", "the recent runs of a notebook's pipeline, or of every pipeline with --all",
                  _list_arguments, _list)
