"""The ``kfp`` exporter: a tagged notebook becomes a KFP v2 pipeline script."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from nbconvert.exporters import TemplateExporter
from nbconvert.preprocessors import RegexRemovePreprocessor, TagRemovePreprocessor
from traitlets import Unicode, default, validate
from traitlets.config import Config

from .dependencyanalyzer import DependencyAnalyzer
from .errors import TracebackFilter
from .marshalinjector import MarshalInjector
from .naming import kfp_name
from .tagparser import RESOURCE_KEY, TagParser

#: Folder holding the ``kfp`` template directory.
TEMPLATES = str(Path(__file__).parent / "templates")

#: Kale notebook metadata keys this version reads but does not apply yet.
UNAPPLIED_METADATA = ("volumes", "enable_caching", "steps_defaults", "katib_run", "katib_metadata",
                      "autosnapshot", "snapshot_volumes", "storage_class_name", "volume_access_mode")

_PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")


def _metadata_text(metadata: dict[str, Any], *keys: str) -> str | None:
    """First non-empty string among Kale notebook metadata keys (a dotted key reads a nested dict)."""
    for key in keys:
        value: Any = metadata
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value.strip():
            return value
    return None


class KFPExporter(TemplateExporter):
    """Export a notebook whose cells carry Kale tags as a Kubeflow Pipelines v2 script.

    The preprocessor chain (TagParser -> DependencyAnalyzer -> MarshalInjector)
    stores the pipeline in ``resources["kfp"]`` and the ``kfp`` template prints it.
    Pipeline settings come from these traits first, then from the notebook's
    ``kubeflow_notebook`` metadata (Kale 0.x, 1.x and 2.x keys), then defaults.
    """

    export_from_notebook = "Kubeflow Pipeline"
    output_mimetype = "text/x-python"

    pipeline_name = Unicode(
        None, allow_none=True,
        help="KFP pipeline name (lower case, digits, dashes). Default: the notebook metadata's "
        "'pipeline_name', else the notebook's file name.",
    ).tag(config=True)
    pipeline_description = Unicode(
        None, allow_none=True,
        help="Pipeline description. Default: the notebook metadata's 'pipeline_description'.",
    ).tag(config=True)
    base_image = Unicode(
        None, allow_none=True,
        help="Container image of every step. Default: the notebook metadata's 'base_image' "
        "(or Kale 1.x 'docker_image'), else python:<the converting Python's version>.",
    ).tag(config=True)
    experiment = Unicode(
        None, allow_none=True,
        help="KFP experiment that runs are filed under. Default: the notebook metadata's "
        "'experiment_name' (or Kale 1.x 'experiment.name'), else 'Default'.",
    ).tag(config=True)
    script_suffix = Unicode(
        "_pipeline.py",
        help="Ending of the written script's file name: x.ipynb -> x_pipeline.py. Keep the stem "
        "free of dots: 'kfp dsl compile --py' imports the script as a module.",
    ).tag(config=True)

    def __init__(self, config: Config | None = None, **kw: Any):
        super().__init__(config=config, **kw)
        TracebackFilter.install(self.log)

    @default("file_extension")
    def _file_extension_default(self) -> str:
        return ".py"

    @default("template_name")
    def _template_name_default(self) -> str:
        return "kfp"

    @default("extra_template_basedirs")
    def _extra_template_basedirs_default(self) -> list[str]:
        return [TEMPLATES]

    @validate("extra_template_basedirs")
    def _keep_our_templates(self, proposal: Any) -> list[str]:
        dirs = list(proposal["value"])
        return dirs if TEMPLATES in dirs else [*dirs, TEMPLATES]

    @default("default_preprocessors")
    def _default_preprocessors_default(self) -> list[Any]:
        # nbconvert's cell-removal preprocessors stay available (disabled unless configured);
        # the others (outputs, execution, LaTeX, ...) have no meaning for a pipeline script.
        return [TagRemovePreprocessor, RegexRemovePreprocessor, TagParser, DependencyAnalyzer, MarshalInjector]

    @property
    def default_config(self) -> Config:
        """Enable the three pipeline preprocessors."""
        config = Config({
            "TagParser": {"enabled": True},
            "DependencyAnalyzer": {"enabled": True},
            "MarshalInjector": {"enabled": True},
        })
        config.merge(super().default_config)
        return config

    def pipeline_settings(self, nb: Any, resources: dict[str, Any]) -> dict[str, str | None]:
        """Resolve name, description, image and experiment: traits, then notebook metadata, then defaults."""
        metadata = nb.get("metadata", {}).get("kubeflow_notebook", {}) or {}
        notebook = (resources.get("metadata") or {}).get("name") or "notebook"
        name = self.pipeline_name or _metadata_text(metadata, "pipeline_name")
        if name is None:
            name = kfp_name(notebook)
        elif not _PIPELINE_NAME.match(name):
            fixed = kfp_name(name)
            self.log.warning("pipeline name %r is not a valid KFP name; using %r", name, fixed)
            name = fixed
        unapplied = [key for key in UNAPPLIED_METADATA if metadata.get(key) not in (None, "", [], {}, False)]
        if unapplied:
            self.log.warning("notebook metadata %s: recognised but not applied in this version",
                             ", ".join(f"'{key}'" for key in unapplied))
        return {
            "name": name,
            "description": self.pipeline_description or _metadata_text(metadata, "pipeline_description"),
            "base_image": self.base_image or _metadata_text(metadata, "base_image", "docker_image")
            or f"python:{sys.version_info.major}.{sys.version_info.minor}",
            "experiment": self.experiment or _metadata_text(metadata, "experiment_name", "experiment.name")
            or "Default",
            "notebook": notebook,
        }

    def from_notebook_node(self, nb: Any, resources: dict[str, Any] | None = None, **kw: Any):
        """Convert a notebook node into the pipeline script."""
        resources = dict(resources or {})
        resources[RESOURCE_KEY] = {"pipeline": self.pipeline_settings(nb, resources)}
        output, resources = super().from_notebook_node(nb, resources, **kw)
        resources["output_extension"] = self.script_suffix
        return output, resources
