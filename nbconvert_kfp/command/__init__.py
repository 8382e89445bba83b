"""The ``nbconvert-kfp`` command: from a notebook to a watched run on a KFP cluster, and what follows.

Each subcommand is a ``Subcommand`` record (``subcommand.py``) in one table, ``SUBCOMMANDS``;
the command line is built from that table. A new subcommand is a module that defines its
record, added to the table. The command runs where the whole package is installed; the
jobs it shares with the generated script are the script's own (``nbconvert_kfp.script``).
"""

from __future__ import annotations

import argparse
import sys

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
        child.set_defaults(handler=subcommand.run, prog=f"{PROG} {subcommand.name}", usage=child.format_usage())
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the ``nbconvert-kfp`` command line; return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if kale.is_kale_command_line(argv, {s.name for s in SUBCOMMANDS}):
        return kale.main(argv)
    top = parser()
    args, options = top.parse_known_args(argv)
    if not getattr(args, "handler", None):
        top.print_help(sys.stderr)
        return 2
    try:
        if hasattr(args, "notebook"):
            args.config = conversion_config(args, options)
        elif options:
            raise CommandError(f"unrecognized arguments: {' '.join(options)}", 2)
        return args.handler(args)
    except CommandError as error:
        if error.status == 2:
            print(args.usage, end="", file=sys.stderr)
        print(f"{args.prog}: {error}", file=sys.stderr)
        return error.status
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return 130
