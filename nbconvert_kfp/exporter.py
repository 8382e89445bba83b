"""The ``kfp`` exporter: a tagged notebook becomes a KFP v2 pipeline script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbconvert.exporters import TemplateExporter
from nbconvert.preprocessors import RegexRemovePreprocessor, TagRemovePreprocessor
from traitlets import Bool, Dict, List, Unicode, default, validate
from traitlets.config import Config

from . import settings
from .dependencyanalyzer import DependencyAnalyzer
from .errors import TracebackFilter
from .marshalinjector import MarshalInjector
from .tagparser import RESOURCE_KEY, TagParser

#: Folder holding the ``kfp`` template directory.
TEMPLATES = str(Path(__file__).parent / "templates")


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
    enable_caching = Bool(
        None, allow_none=True,
        help="Cache step results on KFP (a step's 'cache:' tag still wins). Default: the notebook "
        "metadata's 'enable_caching', else KFP's own default (on).",
    ).tag(config=True)
    volumes = List(
        Dict(), default_value=None, allow_none=True,
        help="Volumes mounted into the steps, as in the notebook metadata 'volumes': "
        "[{'type': 'pvc'|'new_pvc', 'name': ..., 'mount_point': '/data', 'size': 5, "
        "'size_type': 'Gi', 'expose_as_env_var': true, 'steps': [...]}]. Default: the metadata's.",
    ).tag(config=True)
    steps_defaults = List(
        Unicode(), default_value=None, allow_none=True,
        help="Step option tags applied to every step ('label:team:ml', 'limit:memory:2Gi'); a "
        "step's own tags win. Default: the notebook metadata's 'steps_defaults'.",
    ).tag(config=True)
    install_packages = Bool(
        True,
        help="Give each step the packages its imports need, pinned to the versions installed "
        "where the conversion runs (sklearn -> scikit-learn==X). Turn off when the image has them.",
    ).tag(config=True)
    extra_packages = List(
        Unicode(), help="Extra pip requirements installed in every step (e.g. 'pyarrow==17.0.0').",
    ).tag(config=True)
    pip_index_urls = List(
        Unicode(), help="Package index URLs the steps install packages from (first one is the index).",
    ).tag(config=True)
    step_reports = Bool(
        True,
        help="Give every step an HTML report of its cells and outputs (a KFP HTML artifact); a "
        "step's 'report:disabled' tag turns its own off.",
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

    def pipeline_settings(self, nb: Any, resources: dict[str, Any]) -> dict[str, Any]:
        """Resolve the pipeline settings: traits, then notebook metadata, then defaults."""
        metadata = nb.get("metadata", {}).get("kubeflow_notebook", {}) or {}
        notebook = (resources.get("metadata") or {}).get("name") or "notebook"
        options = {name: getattr(self, name) for name in (
            "pipeline_name", "pipeline_description", "base_image", "experiment", "enable_caching",
            "volumes", "steps_defaults", "install_packages", "extra_packages", "pip_index_urls",
            "step_reports")}
        return settings.resolve(options, metadata, notebook, self.log)

    def from_notebook_node(self, nb: Any, resources: dict[str, Any] | None = None, **kw: Any):
        """Convert a notebook node into the pipeline script."""
        resources = dict(resources or {})
        resources[RESOURCE_KEY] = {"pipeline": self.pipeline_settings(nb, resources)}
        output, resources = super().from_notebook_node(nb, resources, **kw)
        resources["output_extension"] = self.script_suffix
        return output, resources
