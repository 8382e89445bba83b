"""Kale's command line, as Kale documents it: ``nbconvert-kfp --nb X.ipynb --pipeline_name N ...``.

Kale users run ``kale --nb X.ipynb [--pipeline_name N] [--pipeline_description D] [--docker_image IMG]
[--experiment_name E] [--upload_pipeline] [--run_pipeline] [--kfp_host H]`` (Kale 1.x and 2.x), or
Kale 0.x's ``--pipeline_descr``, ``--deploy`` and ``--kfp_port``. The same words work here: the
notebook is converted (``X_pipeline.py``) and compiled (``X_pipeline.yaml``), as Kale compiles it,
then uploaded and run when asked. Each flag maps to one of ours (:data:`FLAGS`); a flag Kale has
that means nothing here is one line saying so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import notebook
from .subcommand import CommandError

#: Kale's flags that set an exporter option: flag -> KFPExporter trait.
EXPORTER_FLAGS = {"--pipeline_name": "pipeline_name", "--pipeline_description": "pipeline_description",
                  "--pipeline_descr": "pipeline_description", "--docker_image": "base_image",
                  "--experiment_name": "experiment"}
#: Kale's flags that override a notebook metadata key: flag -> ``kubeflow_notebook`` key.
METADATA_FLAGS = {"--storage-class-name": "storage_class_name", "--volume-access-mode": "volume_access_mode"}
#: What Kale's other flags become here, for the help (docs/command.md has the same table).
FLAGS = {
    "--nb X.ipynb": "the notebook (nbconvert-kfp compile X.ipynb)",
    **{flag: f"--KFPExporter.{trait}" for flag, trait in EXPORTER_FLAGS.items()},
    **{flag: f"the notebook metadata's {key}" for flag, key in METADATA_FLAGS.items()},
    "--upload_pipeline": "nbconvert-kfp upload",
    "--run_pipeline": "nbconvert-kfp run --no-wait",
    "--deploy": "nbconvert-kfp run --no-wait (Kale 0.x)",
    "--kfp_host HOST[:PORT]": "--host (http:// added when no scheme is given)",
    "--kfp_port PORT": "--host http://localhost:PORT/pipeline (Kale 0.x)",
    "--debug": "the conversion's information lines",
}


def is_kale_command_line(argv: list[str], subcommands: set[str]) -> bool:
    """Whether ``argv`` is Kale's command line (``--nb`` and no subcommand of ours)."""
    return not (argv and argv[0] in subcommands) and any(a == "--nb" or a.startswith("--nb=") for a in argv)


def parser() -> argparse.ArgumentParser:
    """Kale's command line."""
    top = argparse.ArgumentParser(prog="nbconvert-kfp --nb", description=__doc__.split("\n\n")[1],
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog="Kale's flags here:\n" + "\n".join(f"  {k:26s} {v}" for k, v in FLAGS.items()))
    top.add_argument("--nb", type=Path, required=True, help="the notebook")
    for flag in EXPORTER_FLAGS:
        top.add_argument(flag, dest=flag[2:])
    for flag in METADATA_FLAGS:
        top.add_argument(flag, dest=flag[2:].replace("-", "_"))
    top.add_argument("--upload_pipeline", action="store_true")
    top.add_argument("--run_pipeline", action="store_true")
    top.add_argument("--deploy", action="store_true")
    top.add_argument("--kfp_host")
    top.add_argument("--kfp_port", type=int)
    top.add_argument("--debug", action="store_true")
    return top


def _host(args: argparse.Namespace) -> str | None:
    """The KFP API URL from Kale's ``--kfp_host`` (``<host>:<port>``, scheme optional) or 0.x's ``--kfp_port``."""
    if args.kfp_host:
        return args.kfp_host if "://" in args.kfp_host else f"http://{args.kfp_host}"
    if args.kfp_port is not None:
        return f"http://localhost:{args.kfp_port}/pipeline"
    return None


def main(argv: list[str]) -> int:
    """Convert, compile and (when asked) upload and run, as Kale's command does; return the exit status."""
    command = parser()
    args, options = command.parse_known_args(argv)
    try:
        config = notebook.exporter_config(options)
        for flag, trait in EXPORTER_FLAGS.items():
            value = getattr(args, flag[2:])
            if value is not None:
                config.KFPExporter[trait] = value
        metadata = {key: getattr(args, flag[2:].replace("-", "_")) for flag, key in METADATA_FLAGS.items()
                    if getattr(args, flag[2:].replace("-", "_")) is not None}
        script_path = notebook.convert(args.nb, config, metadata, verbose=args.debug)
        print(f"Wrote {script_path}")
        script = notebook.load(script_path)
        from ..script import cli
        from ..script.compiler import write_ir

        package = script_path.with_suffix(".yaml")
        write_ir(script["pipeline"], package, {})
        print(f"Wrote {package}")
        run = args.run_pipeline or args.deploy
        if not (args.upload_pipeline or run):
            return 0
        return cli.deploy(script, {}, _host(args), None, None, run)
    except CommandError as error:
        print(f"nbconvert-kfp: {error}", file=sys.stderr)
        return error.status
