"""Subcommand: the record each subcommand of ``nbconvert-kfp`` is, and the options several share.

The options follow what users know: kfp's CLI (``--host``, ``--namespace``, ``--experiment``,
``--run-name``, ``--timeout``) and papermill (``-p NAME VALUE``, ``-f params.yaml``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..script.cli import duration_seconds


@dataclass(frozen=True)
class Subcommand:
    """One subcommand: its name, its one-line help, the function that adds its options to its
    parser, the function that runs it and returns the exit status, and text after its options."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str = ""


class CommandError(Exception):
    """A failure the command reports as one line (no traceback) with an exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(" ".join(str(message).split()))
        self.status = status


#: Short forms of the exporter options users set most: option -> KFPExporter trait.
EXPORTER_SHORT_FORMS = {"--image": "base_image", "--pipeline-name": "pipeline_name",
                        "--pipeline-description": "pipeline_description", "--data-files": "data_files"}


def add_notebook(parser: argparse.ArgumentParser) -> None:
    """The notebook argument, and the exporter options of its conversion."""
    parser.add_argument("notebook", type=Path, metavar="NOTEBOOK", help="the tagged notebook (.ipynb)")
    group = parser.add_argument_group(
        "conversion", "options of the conversion, as for jupyter nbconvert --to kfp: any --KFPExporter.NAME=VALUE "
        "(and --TagParser., --DependencyAnalyzer., --ComponentBuilder. options), or these short forms")
    for option, trait in EXPORTER_SHORT_FORMS.items():
        group.add_argument(option, dest=f"exporter_{trait}", metavar=trait.split("_")[-1].upper(),
                           help=f"--KFPExporter.{trait}")


def conversion_config(args: argparse.Namespace, options: list[str]):
    """The exporter configuration of a converting subcommand: its ``--Class.trait=value`` options and short forms."""
    from .notebook import exporter_config

    config = exporter_config(options)
    for trait in EXPORTER_SHORT_FORMS.values():
        value = getattr(args, f"exporter_{trait}", None)
        if value is not None:
            config.KFPExporter[trait] = value
    return config


def add_parameters(parser: argparse.ArgumentParser) -> None:
    """``-p NAME VALUE`` (repeatable, typed as papermill types it) and ``-f FILE`` (a YAML mapping)."""
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="set a pipeline parameter; the value is converted to the parameter's type "
                        "(repeatable; wins over -f)")
    parser.add_argument("-f", "--parameters-file", type=Path, metavar="FILE",
                        help="a YAML file of pipeline parameters (NAME: value)")


def add_cluster(parser: argparse.ArgumentParser) -> None:
    """Where the KFP API is and how to reach it, as the generated script's --host."""
    parser.add_argument("--host", help="the KFP API URL (default: $KF_PIPELINES_ENDPOINT, else in-cluster or kube "
                        "config); the token comes from $KF_PIPELINES_TOKEN, $KF_PIPELINES_SA_TOKEN_PATH or "
                        "wherever kfp.Client finds one")
    parser.add_argument("--namespace", help="the user namespace (multi-user KFP)")
    parser.add_argument("--ca-cert", help="the CA certificate file that signed the server's TLS certificate")


def add_waiting(parser: argparse.ArgumentParser) -> None:
    """How long and how often to poll a run."""
    parser.add_argument("--timeout", type=duration_seconds, metavar="DURATION",
                        help="stop waiting after DURATION (seconds, or 30m, 2h) with exit status 6; the run goes on")
    parser.add_argument("--interval", type=duration_seconds, default=5.0, metavar="DURATION",
                        help="time between two polls of the run (default: 5s)")


def connect(args: argparse.Namespace):
    """A kfp.Client for ``--host`` and ``--ca-cert``; a connection failure is a CommandError."""
    from ..script.cluster import deployment

    try:
        return deployment.client(args.host, ssl_ca_cert=args.ca_cert)
    except deployment.DeploymentError as error:
        raise CommandError(str(error)) from None
