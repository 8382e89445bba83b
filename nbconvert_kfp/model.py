"""The pipeline model: what the preprocessors leave in ``resources["kfp"]``, as typed records.

The records are ``TypedDict``s, so the model stays plain data: other nbconvert tools
read it as dicts and lists, and the server API sends parts of it as JSON. Each
preprocessor fills its own fields:

- the exporter: ``pipeline`` (the resolved settings);
- ``TagParser``: ``prelude``, ``parameters``, ``metrics`` and each step's ``name``,
  ``cells``, ``prev`` and ``options``;
- ``DependencyAnalyzer``: ``imports``, ``outputs`` and each step's ``parents``, ``inputs``,
  ``input_sources``, ``outputs``, ``output_types``, ``parameters``, ``metrics``,
  ``imports``, ``definitions``, ``modules``, ``lazy`` and ``uses_ipython``; it also puts the
  steps in topological order;
- ``ComponentBuilder``: ``script`` and each step's ``component``: the identifiers and
  source literals the template prints.

Cell numbers: ``index`` and ``cell`` fields are nbformat's 0-based cell indexes; every
message shown to a user counts cells from 1, as JupyterLab does.
"""

from __future__ import annotations

from typing import Any, TypedDict

#: Key of the pipeline model in nbconvert's ``resources``.
RESOURCE_KEY = "kfp"


def cell_number(index: int) -> int:
    """The number JupyterLab shows for the cell at nbformat's 0-based ``index`` (it counts from 1)."""
    return index + 1


class _CellRequired(TypedDict):
    index: int
    source: str


class Cell(_CellRequired, total=False):
    """A code cell: its 0-based index and its source as plain Python.

    ``original`` is the text the user wrote, when IPython syntax (``%magic``,
    ``!shell``) was translated into the ``get_ipython()`` calls in ``source``.
    ``role`` is ``parameters`` for a papermill parameters cell that runs in every step.
    """

    original: str
    role: str


class Parameter(TypedDict):
    """A pipeline parameter: its name, type (``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``, or
    ``literal`` for a value carried as its Python literal), default value and the index of its cell."""

    name: str
    type: str
    default: Any
    cell: int


class Metric(TypedDict):
    """A variable listed in a ``pipeline-metrics`` cell, and that cell's index."""

    name: str
    cell: int


class _PipelineOutputRequired(TypedDict):
    variable: str
    step: str
    kind: str
    type: str
    cell: int


class PipelineOutput(_PipelineOutputRequired, total=False):
    """A value the pipeline returns: a metric (``kind`` ``metric``, ``type`` ``float``) or a variable an
    ``output:`` tag marks (``kind`` ``artifact``, ``type`` its artifact type), the step that gives it and the
    cell that names it. ``name`` is the output's name in the compiled pipeline (the component builder's)."""

    name: str


class PrevTag(TypedDict):
    """A dependency a ``prev:`` tag declares: the step it names, and the cell and tag it came from."""

    step: str
    cell: int
    tag: str


class _StepOptionRequired(TypedDict):
    kind: str


class StepOption(_StepOptionRequired, total=False):
    """A parsed step option tag (see :mod:`nbconvert_kfp.notebook.stepoption` for each kind's fields).

    ``kind`` names the option (``limit``, ``retry``, ``env``, ...); the other keys
    are the kind's values, e.g. ``{"kind": "limit", "resource": "memory", "amount": "4Gi"}``.
    """

    resource: str
    amount: str
    image: str
    enabled: bool
    count: int
    backoff: str
    factor: float
    max_backoff: str
    seconds: int
    name: str
    value: str | None
    secret: str
    key: str
    env: str
    operator: str
    effect: str | None
    requirement: str
    variable: str
    cell: int


class _VolumeRequired(TypedDict):
    type: str
    name: str
    mount_point: str
    steps: list[str] | None
    env: str | None


class Volume(_VolumeRequired, total=False):
    """A volume from the notebook metadata: ``pvc`` mounts an existing claim, ``new_pvc`` creates one per run.

    ``steps`` limits the mount to the steps it names (``None``: every step); ``env``
    is the environment variable that holds the mount point, if exposed. A ``new_pvc``
    also has ``size``, ``access_modes``, ``storage_class`` and ``annotations``.
    """

    size: str
    access_modes: list[str]
    storage_class: str | None
    annotations: dict[str, str]
    keep: bool


class Settings(TypedDict):
    """The pipeline settings, resolved from the exporter's traits, then the notebook metadata, then defaults."""

    name: str
    description: str | None
    base_image: str
    experiment: str
    notebook: str
    enable_caching: bool | None
    volumes: list[Volume]
    steps_defaults: list[str]
    install_packages: bool
    extra_packages: list[str]
    pip_index_urls: list[str]
    pip_trusted_hosts: list[str]
    install_kfp_package: bool
    step_reports: bool
    runtime: str
    runtime_package: str
    data_files: str
    data_root: str


class DataFile(TypedDict):
    """A file next to the notebook that a step reads: its path relative to the notebook's folder, its size in
    bytes and the SHA-256 of its content."""

    path: str
    size: int
    sha256: str


class DataItem(TypedDict, total=False):
    """A path the steps read that exists next to the notebook (a file, a folder or a glob's matches).

    ``digest`` identifies the content of all its ``files``; ``cell`` is the first cell naming it;
    ``steps`` the steps that read it; ``via`` how a cluster's steps get it: ``embedded`` (in the
    pipeline), ``store`` (the object store under the ``data_root`` setting) or ``none``.
    """

    path: str
    kind: str
    files: list[DataFile]
    size: int
    digest: str
    cell: int
    steps: list[str]
    via: str


class Component(TypedDict, total=False):
    """What the template prints for one step: identifiers and source literals (all already valid Python)."""

    function: str
    task: str
    name: str
    docstring: str
    display_name: str | None
    decorator: list[str]
    #: the ``installs(...)`` decorator above ``@dsl.component``, or None: the step installs nothing
    installs: str | None
    signature: list[str]
    #: the return annotation (the metrics the step returns as numbers), or None
    returns: str | None
    arguments: list[str]
    after: list[str]
    body: list[str]
    packages: list[str]
    report: str | None
    metrics: str | None


class LazyUse(TypedDict):
    """A use in a step's code of a library call that imports another distribution when it runs
    (:mod:`nbconvert_kfp.analysis.lazydependency`): ``df.plot()`` needs matplotlib where pandas is imported."""

    use: str
    library: list[str]
    distributions: list[str]
    cell: int


class _StepRequired(TypedDict):
    name: str
    cells: list[Cell]
    prev: list[PrevTag]
    options: list[StepOption]


class Step(_StepRequired, total=False):
    """One pipeline step. The tag parser gives ``name``, ``cells``, ``prev``, ``options`` and ``markdown`` (the
    markdown cells just before its cells, which its report shows); the
    dependency analyzer the data flow; the component builder ``component``."""

    parents: list[str]
    inputs: list[str]
    input_sources: dict[str, str]
    outputs: list[str]
    output_types: dict[str, str]
    parameters: list[str]
    metrics: list[str]
    imports: list[str]
    definitions: list[str]
    modules: list[str]
    lazy: list[LazyUse]
    uses_ipython: bool
    displays: bool
    markdown: list[Cell]
    #: the data items (their paths) the step reads
    data: list[str]
    component: Component


class Script(TypedDict, total=False):
    """What the template prints: the script's header, imports, constants, functions, components, the
    pipeline function, the carried script tools and the main block, each as finished source text."""

    header: list[str]
    imports: list[str]
    constants: list[str]
    functions: list[str]
    components: list[Component]
    parameters: list[str]
    #: the pipeline function's return annotation (``Outputs``), or None: the pipeline returns nothing
    returns: str | None
    docstring: str
    pipeline: list[str]
    tools: str
    parameter_names: dict[str, str]
    main: list[str]


class Pipeline(TypedDict, total=False):
    """``resources["kfp"]``: the whole pipeline."""

    pipeline: Settings
    prelude: list[Cell]
    parameters: list[Parameter]
    metrics: list[Metric]
    steps: list[Step]
    outputs: list[PipelineOutput]
    imports: list[str]
    data: list[DataItem]
    tuning: dict[str, Any] | None
    script: Script
