"""Notebook: a notebook converted for the command: the generated script, loaded, and its parameters.

The script is written next to the notebook (``X_pipeline.py``), as ``jupyter nbconvert --to kfp``
writes it. A conversion error is one line naming the cell; the exporter's warnings are printed
as one line each on stderr, its information messages are not, but for the one that tells what a
conversion inside a Kubeflow notebook server takes from it.
"""

from __future__ import annotations

import json
import logging
import runpy
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping

from .subcommand import CommandError


class _WarningLines(logging.Handler):
    """Prints each warning of the conversion as one line on stderr, and the line that tells what the
    conversion took from the Kubeflow notebook server it runs in."""

    def emit(self, record: logging.LogRecord) -> None:
        from ..exporters.settings import POD_NOTICE
        from ..preprocessors.componentbuilder import DATA_NOTICE

        text = " ".join(record.getMessage().split())
        if record.levelno >= logging.WARNING:
            print(f"nbconvert-kfp: warning: {text}", file=sys.stderr)
        elif record.msg in (POD_NOTICE, DATA_NOTICE) or self.verbose:
            print(f"nbconvert-kfp: {text}", file=sys.stderr)

    def __init__(self, verbose: bool = False):
        super().__init__()
        self.verbose = verbose


#: The classes whose options (``--KFPExporter.base_image=IMAGE``) a converting subcommand passes on.
CONFIGURABLE = ("KFPExporter", "TagParser", "DependencyAnalyzer", "ComponentBuilder")


def exporter_config(options: list[str]) -> Any:
    """A traitlets Config from ``--Class.trait=value`` options of the converting classes (as ``jupyter nbconvert``
    reads them); anything else is a ``CommandError``."""
    from traitlets.config.loader import ArgumentError, KVArgParseConfigLoader

    from ..exporters import KFPExporter
    from ..preprocessors.componentbuilder import ComponentBuilder
    from ..preprocessors.dependencyanalyzer import DependencyAnalyzer
    from ..preprocessors.tagparser import TagParser

    for option in options:
        if option.startswith("-") and not any(option.startswith(f"--{name}.") for name in CONFIGURABLE):
            raise CommandError(f"unrecognized argument {option!r}; exporter options are --KFPExporter.NAME=VALUE "
                               f"(and --{', --'.join(CONFIGURABLE[1:])})", 2)
    try:
        return KVArgParseConfigLoader(options, classes=[KFPExporter, TagParser, DependencyAnalyzer,
                                                         ComponentBuilder]).load_config()
    except (ArgumentError, SystemExit, ValueError) as error:
        raise CommandError(f"bad exporter option: {error}", 2) from None


def convert(notebook: Path, config: Any = None, metadata: dict[str, Any] | None = None,
            verbose: bool = False) -> Path:
    """Convert ``notebook`` to its pipeline script next to it; return the script's path. ``config`` holds
    exporter options, ``metadata`` keys that override the notebook's ``kubeflow_notebook`` metadata."""
    from ..errors import KFPExportError
    from ..exporters import KFPExporter

    if not notebook.is_file():
        raise CommandError(f"{notebook}: no such notebook")
    logger = logging.getLogger("nbconvert_kfp.command.conversion")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(_WarningLines(verbose))
    try:
        exporter = KFPExporter(config=config, log=logger)
    except Exception as error:  # noqa: BLE001 - a trait given a value of the wrong kind
        raise CommandError(f"bad exporter option: {' '.join(str(error).split())[:300]}", 2) from None
    try:
        if metadata:
            script, resources = _convert_with_metadata(exporter, notebook, metadata)
        else:
            script, resources = exporter.from_filename(str(notebook))
    except KFPExportError as error:
        raise CommandError(f"{notebook}: {error}") from None
    except (OSError, ValueError) as error:  # unreadable or invalid notebook JSON
        raise CommandError(f"{notebook}: not a readable notebook: {error}") from None
    path = notebook.with_name(notebook.stem + resources.get("output_extension", exporter.script_suffix))
    path.write_text(script, encoding="utf-8")
    return path


def _convert_with_metadata(exporter: Any, notebook: Path, metadata: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Convert with ``metadata`` laid over the notebook's ``kubeflow_notebook`` metadata (Kale's overrides)."""
    from ..notebook import notebookfile

    nb = notebookfile.read_notebook(notebook.read_bytes(), exporter.log)
    section = nb.metadata.get("kubeflow_notebook")
    nb.metadata["kubeflow_notebook"] = {**(section if isinstance(section, dict) else {}), **metadata}
    resources = {"metadata": {"name": notebook.stem, "path": str(notebook.parent)}}
    return exporter.from_notebook_node(nb, resources)


def load(script: Path) -> dict[str, Any]:
    """The generated script's module namespace (its pipeline, name, parameter types, graph)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kfp's notices about the components it builds
        return runpy.run_path(str(script), run_name="nbconvert_kfp_command_script")


def _as_text(kind: Any, value: Any) -> str:
    """A parameters-file value as the text ``-p`` would give for it."""
    from ..script.parametervalue import literal_text

    name = kind if isinstance(kind, str) else getattr(kind, "__name__", "")
    if isinstance(value, str):
        return value
    if name == "literal":
        return literal_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return repr(value)


def parameter_texts(args: Any, types: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, text) of every parameter the command line sets: ``-f`` first, then ``-p``."""
    texts: list[tuple[str, str]] = []
    if args.parameters_file is not None:
        import yaml

        try:
            values = yaml.safe_load(args.parameters_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise CommandError(f"{args.parameters_file}: not a readable YAML file: {error}", 2) from None
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise CommandError(f"{args.parameters_file}: expected a mapping of parameter names to values", 2)
        texts += [(str(name), _as_text(types.get(str(name), "str"), value)) for name, value in values.items()]
    texts += [(name, text) for name, text in args.parameter]
    for name, _ in texts:
        if name not in types:
            raise CommandError(f"unknown parameter {name!r}; known: {', '.join(types) or 'none'}", 2)
    return texts


def arguments(args: Any, script: Mapping[str, Any]) -> dict[str, Any]:
    """The parameter values, typed as the generated script's ``-p`` types them."""
    from ..script.parametervalue import parse_value

    types = script["PARAMETER_TYPES"]
    values = {}
    for name, text in parameter_texts(args, types):
        try:
            values[name] = parse_value(types[name], text)
        except ValueError as error:
            raise CommandError(f"parameter {name}: {error}", 2) from None
    return values


def compilable(values: dict[str, Any], types: Mapping[str, Any]) -> dict[str, Any]:
    """``values``, when a compiled KFP pipeline can hold each (finite numbers at any depth, exact whole numbers)."""
    from ..script.parametervalue import compiled_value

    for name, value in values.items():
        try:
            compiled_value(types[name], value)
        except ValueError as error:
            raise CommandError(f"parameter {name}: {error}; nbconvert-kfp local takes it", 2) from None
    return values
