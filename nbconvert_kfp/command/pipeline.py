"""Pipeline subcommands: the jobs on a notebook's pipeline (run, local, tune, compile, upload, dag).

Each converts the notebook (``notebook.py``), then does what the generated script does with
the matching option, with the script's own functions (``nbconvert_kfp.script.cli``): ``run``
is ``--run --wait``, ``local`` is ``--local`` and ``tune`` is ``--tune`` (the script runs as a
subprocess), ``compile`` the default, ``upload`` is ``--upload``, ``dag`` is ``--dag``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

from ..script.local.launcher import die_with_parent
from . import notebook
from .subcommand import CommandError, Subcommand, add_cluster, add_notebook, add_parameters, add_waiting

#: What a failed or unfinished run's report ends with.
FOLLOW_HINT = "Logs: nbconvert-kfp logs {run_id} [STEP]; state: nbconvert-kfp status {run_id}"


def _prepare(args: argparse.Namespace):
    script_path = notebook.convert(args.notebook, args.config)
    script = notebook.load(script_path)
    return script_path, script, notebook.compilable(notebook.arguments(args, script), script["PARAMETER_TYPES"])


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    add_notebook(parser)
    add_parameters(parser)
    add_cluster(parser)
    parser.add_argument("--experiment", help="the KFP experiment of the run, created when missing "
                        "(default: the notebook's experiment setting)")
    parser.add_argument("--run-name", help="the run's name (default: PIPELINE-DATE-TIME-XXXX)")
    parser.add_argument("--no-cache", action="store_true", help="turn KFP's cache off for every step")
    parser.add_argument("--no-wait", action="store_true", help="start the run and return at once")
    add_waiting(parser)


def _run(args: argparse.Namespace) -> int:
    from ..script import cli

    _, script, values = _prepare(args)
    return cli.deploy(script, values, args.host, args.experiment, args.namespace, True, args.ca_cert,
                      wait=not args.no_wait, timeout=args.timeout, interval=args.interval, run_name=args.run_name,
                      caching=False if args.no_cache else None, follow_hint=FOLLOW_HINT)


def _upload_arguments(parser: argparse.ArgumentParser) -> None:
    add_notebook(parser)
    add_parameters(parser)
    add_cluster(parser)
    parser.add_argument("--no-cache", action="store_true", help="turn KFP's cache off for every step")


def _upload(args: argparse.Namespace) -> int:
    from ..script import cli

    _, script, values = _prepare(args)
    return cli.deploy(script, values, args.host, None, args.namespace, False, args.ca_cert,
                      caching=False if args.no_cache else None)


def _local_arguments(parser: argparse.ArgumentParser) -> None:
    add_notebook(parser)
    add_parameters(parser)
    parser.add_argument("--workdir", type=Path, help="the directory steps run in (default: the notebook's)")
    parser.add_argument("--cold-start", action="store_true",
                        help="start every step in a new interpreter instead of forking a warm one")
    parser.add_argument("--no-cache", action="store_true",
                        help="run every step (by default a step whose code, parameters and inputs did not change "
                        "since an earlier run reuses that run's outputs)")
    parser.add_argument("--step", metavar="NAME", help="run this step only, with the steps it needs")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show everything kfp.local and the steps print, as it happens")


def _script_command(args: argparse.Namespace, option: str, flags: dict[str, object]) -> int:
    """Convert the notebook and run its script with ``option``, ``-p`` values and the given flags."""
    script_path = notebook.convert(args.notebook, args.config)
    script = notebook.load(script_path)
    command = [sys.executable, str(script_path), option]
    notebook.arguments(args, script)  # a bad value is this command's error, with its own usage
    for name, text in notebook.parameter_texts(args, script["PARAMETER_TYPES"]):
        command += ["-p", name, text]
    for flag, value in flags.items():
        if value is True:
            command.append(flag)
        elif value not in (None, False):
            command += [flag, str(value)]
    return _run_forwarding_signals(command)


#: Signals this command passes on to the script it runs, which stops its steps and cleans up.
FORWARDED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _run_forwarding_signals(command: list[str]) -> int:
    """Run the script in a session of its own and pass it the signals this command gets (once each: a terminal's
    Ctrl-C reaches only this command's group), so it stops its steps; return its exit status."""
    linux = sys.platform.startswith("linux")
    process = subprocess.Popen(command, start_new_session=True, preexec_fn=die_with_parent if linux else None)

    def forward(signum: int, frame: object) -> None:
        try:
            process.send_signal(signum)
        except OSError:
            pass

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:  # a handler replaced while waiting: keep waiting for the script
                continue
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _local(args: argparse.Namespace) -> int:
    return _script_command(args, "--local", {"--workdir": args.workdir, "--cold-start": args.cold_start,
                                             "--no-cache": args.no_cache, "--step": args.step,
                                             "--verbose": args.verbose})


def _tune_arguments(parser: argparse.ArgumentParser) -> None:
    add_notebook(parser)
    add_parameters(parser)
    parser.add_argument("--parallel", type=int, metavar="N",
                        help="trials at a time (default: parallelTrialCount, at most the CPU count)")
    parser.add_argument("--seed", type=int, metavar="N", help="the seed of random choices")
    parser.add_argument("--max-trials", type=int, metavar="N", help="run at most N trials (default: maxTrialCount)")
    parser.add_argument("--workdir", type=Path, help="the directory steps run in (default: the notebook's)")
    parser.add_argument("--cold-start", action="store_true",
                        help="start every step in a new interpreter instead of forking a warm one")


def _tune(args: argparse.Namespace) -> int:
    return _script_command(args, "--tune", {"--parallel": args.parallel, "--seed": args.seed,
                                            "--max-trials": args.max_trials, "--workdir": args.workdir,
                                            "--cold-start": args.cold_start})


def _compile_arguments(parser: argparse.ArgumentParser) -> None:
    add_notebook(parser)
    add_parameters(parser)
    parser.add_argument("--output", type=Path, help="where to write the IR YAML (default: X_pipeline.yaml next to "
                        "the notebook)")


def _compile(args: argparse.Namespace) -> int:
    from ..script.compiler import write_ir

    script_path, script, values = _prepare(args)
    output = args.output or script_path.with_suffix(".yaml")
    write_ir(script["pipeline"], output, values)
    print(f"Wrote {output}")
    return 0


def _dag_arguments(parser: argparse.ArgumentParser) -> None:
    add_notebook(parser)
    parser.add_argument("--output", type=Path, help="the picture: SVG, or Mermaid for .mmd, or Markdown with a "
                        "Mermaid diagram for .md (default: X_pipeline.svg next to the notebook)")


def _dag(args: argparse.Namespace) -> int:
    from ..script import dag

    if args.output is not None:
        try:
            dag.check_format(args.output)
        except dag.FormatError as err:
            raise CommandError(f"--output: {err}", 2) from None
    script_path = notebook.convert(args.notebook, args.config)
    script = notebook.load(script_path)
    output = args.output or script_path.with_suffix(".svg")
    dag.write(dag.Graph.from_pipeline(script["pipeline"]), output)
    print(f"Wrote {output}")
    return 0


#: The exit statuses of ``run``, for its --help (docs/command.md has the same table).
EXIT_STATUSES = """exit status:
  0  the run succeeded (with --no-wait: it started)
  1  conversion error, or the upload or the KFP API failed
  2  bad command line or parameter value
  3  the run failed    4  the run was canceled    5  the run ended in error
  6  --timeout passed before the run ended (the run goes on)"""

RUN = Subcommand("run", "convert the notebook, upload the pipeline (unless a version already holds it), start a run "
                 "and follow it to its end", _run_arguments, _run, EXIT_STATUSES)
LOCAL = Subcommand("local", "convert the notebook and run the pipeline on this machine (kfp.local)",
                   _local_arguments, _local)
TUNE = Subcommand("tune", "convert the notebook and run its hyperparameter search (kubeflow_notebook.katib_metadata) "
                  "on this machine: trials as local runs, then the table of trials and the best one",
                  _tune_arguments, _tune)
COMPILE = Subcommand("compile", "convert the notebook and compile the pipeline to KFP IR YAML",
                     _compile_arguments, _compile)
UPLOAD = Subcommand("upload", "convert the notebook and upload the pipeline (unless a version already holds it)",
                    _upload_arguments, _upload)
DAG = Subcommand("dag", "convert the notebook and draw the pipeline", _dag_arguments, _dag)
