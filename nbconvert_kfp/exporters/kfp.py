"""The ``kfp`` exporter: a tagged notebook becomes a KFP v2 pipeline script."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from nbconvert.exporters import TemplateExporter
from nbconvert.preprocessors import RegexRemovePreprocessor, TagRemovePreprocessor
from traitlets import Bool, Dict, Enum, List, Unicode, default, validate
from traitlets.config import Application, Config

from ..analysis import workflowsize
from ..errors import TracebackFilter
from ..codegen.identifier import kfp_name
from ..notebook import notebookfile
from ..model import RESOURCE_KEY, Pipeline, Settings
from ..preprocessors.componentbuilder import DATA_MODES, RUNTIME_MODES, ComponentBuilder
from ..preprocessors.dependencyanalyzer import DependencyAnalyzer
from ..preprocessors.tagparser import TagParser
from ..script.cluster import notebookpod
from . import settings

#: A run whose estimated Workflow passes this share of Argo's limit gets a warning.
SIZE_WARNING = 0.95
#: Folder holding the ``kfp`` template directory.
TEMPLATES = str(Path(__file__).parent.parent / "templates")
#: The traits that are pipeline settings (see ``settings.resolve``).
SETTING_TRAITS = ("pipeline_name", "pipeline_description", "base_image", "experiment", "enable_caching", "volumes",
                  "steps_defaults", "install_packages", "extra_packages", "pip_index_urls", "pip_trusted_hosts",
                  "install_kfp_package", "step_reports", "runtime", "runtime_package", "data_files", "data_root",
                  "mount_workspace")


class KFPExporter(TemplateExporter):
    """Export a notebook whose cells carry Kale tags as a Kubeflow Pipelines v2 script.

    The preprocessor chain (TagParser -> DependencyAnalyzer -> ComponentBuilder)
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
        "(or Kale 1.x 'docker_image'), else, inside a Kubeflow notebook server, the server's own image "
        "(pinned to its digest), else python:<the converting Python's version>.",
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
    mount_workspace = Bool(
        False,
        help="Inside a Kubeflow notebook server, mount its workspace volume (the claim mounted where the "
        "notebook is, e.g. /home/jovyan) into every step at the same path. Off by default: a ReadWriteOnce "
        "claim cannot be mounted on another node while the notebook server holds it.",
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
    pip_trusted_hosts = List(
        Unicode(),
        help="Hosts the steps' installers may reach without verifying TLS (pip --trusted-host, uv "
        "--allow-insecure-host). Default: none; every index's certificate is verified.",
    ).tag(config=True)
    install_kfp_package = Bool(
        True,
        help="Let each step install kfp when it starts (the step image needs kfp to run the step). "
        "Turn off when the image already has kfp, e.g. on a cluster without a package index.",
    ).tag(config=True)
    runtime = Enum(
        list(RUNTIME_MODES), "artifact",
        help="How the steps get nbconvert-kfp's step runtime. 'artifact': a first step writes it, with the "
        "notebook's imports and functions cells, to one KFP artifact that every step loads (works on any KFP "
        "install, keeps steps small). 'package': each step installs 'runtime_package'. 'image': the step "
        "image has it. 'embedded': every step carries it in its own command (tiny pipelines only).",
    ).tag(config=True)
    runtime_package = Unicode(
        "",
        help="With runtime='package', the requirement the steps install (default: "
        "nbconvert-kfp-runtime==<this version>, from the steps' package index).",
    ).tag(config=True)
    data_files = Enum(
        list(DATA_MODES), "auto",
        help="How the files next to the notebook that the steps read reach a cluster's steps. 'auto': small "
        "ones inside the pipeline, larger ones through the object store under 'data_root'. 'embed': inside the "
        "pipeline only (a file too large is an error). 'store': the object store only. 'none': they do not "
        "travel (a volume gives the steps the files).",
    ).tag(config=True)
    data_root = Unicode(
        None, allow_none=True,
        help="Object store folder (minio://, s3:// or gs:// URI) for data files too large to ride inside the "
        "pipeline; --run, --upload and --push-data copy them there, content-addressed. Default: "
        "minio://mlpipeline/nbconvert-kfp/data, the MinIO bucket of a default KFP install; '' for none.",
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
        if config is not None and "MarshalInjector" in config:
            # The component builder's former name: its configuration section still applies.
            config = Config(config)
            section = Config({"ComponentBuilder": config["MarshalInjector"]})
            section.merge(Config({"ComponentBuilder": config.get("ComponentBuilder", {})}))
            config.merge(section)
        super().__init__(config=config, **kw)
        TracebackFilter.install(self.log)
        if Application.initialized():
            # `jupyter nbconvert` logs conversion errors through its application's log, which
            # traitlets < 5.16 may not hand to an exporter created without a parent (it caches a
            # fallback logger): attach the filter to that log too.
            TracebackFilter.install(Application.instance().log)

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
        return [TagRemovePreprocessor, RegexRemovePreprocessor, TagParser, DependencyAnalyzer, ComponentBuilder]

    @property
    def default_config(self) -> Config:
        """Enable the three pipeline preprocessors."""
        config = Config({
            "TagParser": {"enabled": True},
            "DependencyAnalyzer": {"enabled": True},
            "ComponentBuilder": {"enabled": True},
        })
        config.merge(super().default_config)
        return config

    def pipeline_settings(self, nb: Any, resources: dict[str, Any]) -> Settings:
        """Resolve the pipeline settings: traits, then notebook metadata, then defaults."""
        metadata = nb.get("metadata", {}).get("kubeflow_notebook", {}) or {}
        notebook = (resources.get("metadata") or {}).get("name") or "notebook"
        options = {name: getattr(self, name) for name in SETTING_TRAITS}
        pod = None
        if notebookpod.inside():
            where = (resources.get("metadata") or {}).get("path")
            folders = [os.path.abspath(f) for f in (where, os.getcwd(), os.path.expanduser("~")) if f is not None]
            pod = functools.partial(notebookpod.read, folders, self.log)
        return settings.resolve(options, metadata, notebook, self.log, pod)

    def from_file(self, file_stream: Any, resources: dict[str, Any] | None = None, **kw: Any):
        """Convert a notebook file; a file nbformat cannot read is a one-line error, not a traceback."""
        # Read the bytes where there are some, so that text which is not UTF-8 is reported by offset.
        binary = getattr(file_stream, "buffer", None)
        try:
            fresh = file_stream.tell() == 0
        except (OSError, ValueError, AttributeError):  # a pipe (--stdin) cannot tell, and has not been read
            fresh = True
        data = binary.read() if binary is not None and fresh else file_stream.read()
        nb = notebookfile.read_notebook(data, self.log)
        return self.from_notebook_node(nb, resources=resources, **kw)

    def from_notebook_node(self, nb: Any, resources: dict[str, Any] | None = None, **kw: Any):
        """Convert a notebook node into the pipeline script."""
        nb = notebookfile.checked_notebook(nb, self.log)
        resources = dict(resources or {})
        resources[RESOURCE_KEY] = {"pipeline": self.pipeline_settings(nb, resources)}
        output, resources = super().from_notebook_node(nb, resources, **kw)
        resources["output_extension"] = self.script_suffix
        self.check_size(workflowsize.estimate_components(_run_order(resources[RESOURCE_KEY])))
        return output, resources

    def check_size(self, estimate: workflowsize.Estimate) -> None:
        """Warn when a run of the pipeline would not fit, or only just, a default KFP install."""
        close = estimate.headroom() < 1 - SIZE_WARNING
        if estimate.completes and not close:
            return
        advice = ("keep the default runtime 'artifact'" if self.runtime == "embedded" else
                  "merge small steps, move large cell code or data into files the steps read, or install the "
                  "runtime in the step image (--KFPExporter.runtime=image)")
        verdict = "would not complete" if not estimate.completes else "would come close to failing"
        self.log.warning("on a KFP cluster a run of this pipeline %s: Argo refuses a Workflow over 1 MiB. "
                         "Estimate: %s. To shrink it: %s", verdict, estimate.describe(), advice)


def _run_order(model: Pipeline) -> list[tuple[str, str, str, list[str], int]]:
    """The components in the order a run executes them, with the source kfp ships for each (the
    function as the template prints it, and the functions it names in ``additional_funcs``), as the
    size estimate takes them."""
    helpers = {function.split("(", 1)[0][len("def "):]: function for function in model["script"]["functions"]}
    order = []
    for c in model["script"]["components"]:
        returns = f" -> {c['returns']}" if c.get("returns") else ""
        source = (f"def {c['function']}(\n" + "".join(f"    {a},\n" for a in c["signature"])
                  + f"){returns}:\n    {c['docstring']}\n" + "".join(f"    {statement}\n" for statement in c["body"]))
        for argument in c["decorator"]:
            if argument.startswith("additional_funcs="):
                source += "".join(helpers.get(name.strip(), "")
                                  for name in argument.split("[", 1)[1].rstrip("]").split(","))
        order.append((kfp_name(c["function"], "step"), c["function"], source, c.get("packages", []),
                      len(c.get("arguments", []))))
    return order
