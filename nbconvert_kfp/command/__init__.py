"""The ``nbconvert-kfp`` command: from a notebook to a watched run on a KFP cluster, and what follows.

Each subcommand is a ``Subcommand`` record (``subcommand.py``) in one table, ``SUBCOMMANDS``;
the command line is built from that table. A new subcommand is a module that defines its
record, added to the table. The command runs where the whole package is installed; the
jobs it shares with the generated script are the script's own (``nbconvert_kfp.script``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from ..script.cli import parameter_options
from . import kale, pipeline, runs
from .subcommand import CommandError, Subcommand, conversion_config

#: Every subcommand, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    pipeline.RUN, pipeline.LOCAL, pipeline.TUNE, pipeline.COMPILE, pipeline.UPLOAD, pipeline.DAG,
    runs.STATUS, runs.LOGS, runs.LIST,
)
PROG = "nbconvert-kfp"


def parser(subcommands: tuple[Subcommand, ...] = SUBCOMMANDS) -> argparse.ArgumentParser:
    """The command line: one sub-parser per subcommand of the table."""
    top = argparse.ArgumentParser(
        prog=PROG, description="Convert a tagged notebook to a Kubeflow pipeline, run it on a KFP cluster "
        "and follow the run; or run it locally, compile it, upload it, draw it.")
    children = top.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    for subcommand in subcommands:
        child = children.add_parser(subcommand.name, help=subcommand.help, description=subcommand.help,
                                    epilog=subcommand.epilog or None,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        subcommand.arguments(child)
        child.set_defaults(handler=subcommand.run, prog=f"{PROG} {subcommand.name}")
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the ``nbconvert-kfp`` command line; return its exit status.

    What it prints goes through ``redaction.Redacting``: no terminal control sequence and no
    known secret from a server's answer reaches the terminal.
    """
    from ..script.cluster import redaction

    argv = sys.argv[1:] if argv is None else list(argv)
    if kale.is_kale_command_line(argv, {s.name for s in SUBCOMMANDS}):
        with redaction.redacted_output():
            _remember_secrets()
            return kale.main(argv)
    pairs, argv = parameter_options(argv)  # -p C -1e-3: argparse would read the value as an option
    top = parser()
    args, options = top.parse_known_args(argv)
    if hasattr(args, "parameter"):
        args.parameter = pairs + args.parameter
    else:  # a subcommand without -p says so, as argparse would
        options = [word for pair in pairs for word in ("-p", *pair)] + options
    if not getattr(args, "handler", None):
        top.print_help(sys.stderr)
        return 2
    with redaction.redacted_output():
        return _handle(args, options)


def _remember_secrets() -> None:
    """Tell the output filter the KFP token this process may send, so that no echo of it is printed."""
    from ..script.cluster import redaction
    from ..script.cluster.deployment import SA_TOKEN_ENV, TOKEN_ENV

    redaction.remember(os.environ.get(TOKEN_ENV))
    if os.environ.get(SA_TOKEN_ENV):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            redaction.remember(Path(os.environ[SA_TOKEN_ENV]).read_text(encoding="utf-8"))


def _handle(args: argparse.Namespace, options: list[str]) -> int:
    """Run the subcommand; its failures are one line on stderr and an exit status."""
    from ..script.cluster.deployment import DeploymentError

    _remember_secrets()
    try:
        if hasattr(args, "notebook"):
            args.config = conversion_config(args, options)
        elif options:
            raise CommandError(f"unrecognized arguments: {' '.join(options)}", 2)
        return args.handler(args)
    except (CommandError, DeploymentError) as error:
        print(f"{args.prog}: {' '.join(str(error).split())}", file=sys.stderr)
        return getattr(error, "status", 1)
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return 130
