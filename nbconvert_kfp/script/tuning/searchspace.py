"""The hyperparameter search a notebook's ``kubeflow_notebook.katib_metadata`` describes, as typed records.

Kale 0.x/1.x wrote the search in Katib's own terms (``kubeflow.org/v1beta1`` Experiment spec fields):
``parameters`` (``name``, ``parameterType`` int/double/categorical/discrete, ``feasibleSpace`` with
``min``/``max``/``step`` or ``list``), ``objective`` (``type`` maximize/minimize, ``objectiveMetricName``,
``goal``, ``additionalMetricNames``), ``algorithm`` (``algorithmName``, ``algorithmSettings``),
``maxTrialCount``, ``parallelTrialCount`` and ``maxFailedTrialCount``. :func:`parse` checks it against the
pipeline (a searched parameter must be a pipeline parameter, the objective a ``pipeline-metrics``
variable) and raises :class:`SearchError`, one line naming the metadata key, for what cannot run.
The conversion parses it; the generated script carries the result as plain data (``Search.to_data``).
Standard library only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..exceptions import ScriptError

#: Where the search sits in the notebook metadata; every error message starts with it.
METADATA_KEY = "kubeflow_notebook.katib_metadata"
#: Katib's parameter types.
PARAMETER_TYPES = ("int", "double", "categorical", "discrete")
#: Katib's distributions of a feasible space (v1beta1); a local search samples uniform and logUniform.
DISTRIBUTIONS = ("uniform", "logUniform", "normal", "logNormal")
#: Katib's hyperparameter search algorithms and the settings each accepts (Katib's suggestion services
#: refuse other settings, so a manifest leaves them out).
ALGORITHMS: dict[str, tuple[str, ...]] = {
    "grid": ("random_state",),
    "random": ("random_state",),
    "tpe": ("n_startup_trials", "n_ei_candidates", "random_state"),
    "multivariate-tpe": ("n_startup_trials", "n_ei_candidates", "random_state"),
    "bayesianoptimization": ("base_estimator", "n_initial_points", "acq_func", "acq_optimizer", "random_state"),
    "cmaes": ("restart_strategy", "sigma", "random_state"),
    "sobol": (),
    "hyperband": ("resource_name", "eta", "r_l"),
    "pbt": ("suggestion_trial_dir", "n_population", "truncation_threshold", "resample_probability"),
}
#: Katib's neural architecture search algorithms: they search a network, not pipeline parameters.
NAS_ALGORITHMS = ("enas", "darts")
#: Kale's defaults for the counts (its JupyterLab panel wrote them into every notebook).
#: The most trials (and parallel or failed trials) a search may ask for.
MOST_TRIALS = 1_000_000
DEFAULT_COUNTS = {"maxTrialCount": 12, "parallelTrialCount": 3, "maxFailedTrialCount": 3}
#: Parameter types of the pipeline that each Katib range type can feed.
_RANGE_TARGETS = {"int": ("int", "float", "literal"), "double": ("float", "literal")}


class SearchError(ScriptError, ValueError):
    """A katib_metadata entry that cannot run; ``key`` is its path under katib_metadata."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{METADATA_KEY}.{key}: {message}" if key else f"{METADATA_KEY}: {message}")


@dataclass(frozen=True)
class SearchParameter:
    """One searched pipeline parameter and its feasible space, in Katib's terms."""

    name: str
    argument: str
    type: str
    minimum: str | None = None
    maximum: str | None = None
    step: str | None = None
    values: tuple[str, ...] = ()
    distribution: str | None = None

    def katib_space(self) -> dict[str, Any]:
        """The ``feasibleSpace`` of a Katib ParameterSpec (every value a string, as Katib's API has it)."""
        if self.values:
            space: dict[str, Any] = {"list": list(self.values)}
        else:
            space = {"min": self.minimum, "max": self.maximum}
            if self.step is not None:
                space["step"] = self.step
        if self.distribution is not None:
            space["distribution"] = self.distribution
        return space


@dataclass(frozen=True)
class Objective:
    """What a trial is judged by: a ``pipeline-metrics`` variable, to maximize or minimize."""

    metric: str
    variable: str
    type: str
    goal: float | None = None
    additional: tuple[tuple[str, str], ...] = ()

    def better(self, value: float, than: float) -> bool:
        """Whether ``value`` beats ``than`` for this objective."""
        return value > than if self.type == "maximize" else value < than

    def reached(self, value: float) -> bool:
        """Whether ``value`` meets the goal (Katib then stops the experiment)."""
        if self.goal is None:
            return False
        return value >= self.goal if self.type == "maximize" else value <= self.goal


@dataclass(frozen=True)
class Search:
    """The whole search: the parameters, the objective, the algorithm and the trial counts."""

    parameters: tuple[SearchParameter, ...]
    objective: Objective
    algorithm: str
    settings: tuple[tuple[str, str], ...] = ()
    max_trials: int = DEFAULT_COUNTS["maxTrialCount"]
    parallel: int = DEFAULT_COUNTS["parallelTrialCount"]
    max_failed: int = DEFAULT_COUNTS["maxFailedTrialCount"]

    def setting(self, name: str) -> str | None:
        """An algorithm setting's value, or ``None``."""
        return next((value for key, value in self.settings if key == name), None)

    def to_data(self) -> dict[str, Any]:
        """The search as plain data (what the generated script carries)."""
        return {
            "parameters": [{"name": p.name, "argument": p.argument, "type": p.type, "min": p.minimum,
                            "max": p.maximum, "step": p.step, "list": list(p.values),
                            "distribution": p.distribution} for p in self.parameters],
            "objective": {"metric": self.objective.metric, "variable": self.objective.variable,
                          "type": self.objective.type, "goal": self.objective.goal,
                          "additional": [list(pair) for pair in self.objective.additional]},
            "algorithm": self.algorithm, "settings": [list(pair) for pair in self.settings],
            "max_trials": self.max_trials, "parallel": self.parallel, "max_failed": self.max_failed,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Search:
        """Read back :meth:`to_data`."""
        objective = data["objective"]
        return cls(
            parameters=tuple(SearchParameter(p["name"], p["argument"], p["type"], p["min"], p["max"], p["step"],
                                             tuple(p["list"]), p["distribution"]) for p in data["parameters"]),
            objective=Objective(objective["metric"], objective["variable"], objective["type"], objective["goal"],
                                tuple((a, b) for a, b in objective["additional"])),
            algorithm=data["algorithm"], settings=tuple((a, b) for a, b in data["settings"]),
            max_trials=data["max_trials"], parallel=data["parallel"], max_failed=data["max_failed"])


def is_unset(metadata: Any) -> bool:
    """Whether katib_metadata is absent or as Kale's panel first writes it (no parameters, no objective)."""
    if not isinstance(metadata, dict) or not metadata:
        return True
    objective = metadata.get("objective")
    name = objective.get("objectiveMetricName") if isinstance(objective, dict) else None
    return not metadata.get("parameters") and not name


def _number_text(value: Any, key: str, integer: bool) -> str:
    """A min/max/step as Katib's string, checked to be a finite number (an integer for ``int``)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SearchError(key, f"expected a number, got {value!r}")
    text = str(value).strip()
    if integer:
        if isinstance(value, float) and value.is_integer():
            text = str(int(value))
        if not re.fullmatch(r"[+-]?\d+", text):
            raise SearchError(key, f"expected an integer for an int parameter, got {value!r}")
        if len(text.lstrip("+-")) > 18:
            raise SearchError(key, f"{text[:24]}… is beyond the whole numbers a KFP parameter carries exactly (2**53)")
        return str(int(text))
    try:
        number = float(text)
    except ValueError:
        raise SearchError(key, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SearchError(key, f"expected a finite number, got {value!r}")
    return text


def _parameter(entry: Any, index: int, pipeline: Mapping[str, tuple[str, str]],
               check_value: Callable[[str, str], None]) -> SearchParameter:
    key = f"parameters[{index}]"
    if not isinstance(entry, dict):
        raise SearchError(key, f"expected an object with name, parameterType and feasibleSpace, got {entry!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise SearchError(f"{key}.name", "missing: name the pipeline parameter to search")
    if name not in pipeline:
        known = ", ".join(pipeline) or "none (tag a cell pipeline-parameters or parameters)"
        raise SearchError(f"{key}.name", f"{name!r} is not a pipeline parameter (parameters: {known})")
    argument, target = pipeline[name]
    kind = entry.get("parameterType")
    if kind not in PARAMETER_TYPES:
        raise SearchError(f"{key}.parameterType", f"{kind!r} is not one of {', '.join(PARAMETER_TYPES)}")
    space = entry.get("feasibleSpace")
    if not isinstance(space, dict):
        raise SearchError(f"{key}.feasibleSpace", f"expected an object with min/max/step or list, got {space!r}")
    distribution = space.get("distribution") or None
    if distribution is not None and distribution not in DISTRIBUTIONS:
        raise SearchError(f"{key}.feasibleSpace.distribution",
                          f"{distribution!r} is not one of {', '.join(DISTRIBUTIONS)}")
    if kind in ("categorical", "discrete"):
        values = space.get("list")
        if any(space.get(k) not in (None, "") for k in ("min", "max", "step")):
            raise SearchError(f"{key}.feasibleSpace", f"a {kind} parameter takes a list, not min/max/step")
        if not isinstance(values, list) or not values:
            raise SearchError(f"{key}.feasibleSpace.list", f"a {kind} parameter needs a non-empty list of values")
        texts: list[str] = []
        for position, value in enumerate(values):
            item = f"{key}.feasibleSpace.list[{position}]"
            if isinstance(value, bool):
                value = "true" if value else "false"
            if not isinstance(value, (str, int, float)):
                raise SearchError(item, f"expected a value, got {value!r}")
            text = str(value)
            if kind == "discrete":
                _number_text(text, item, integer=False)
            if text in texts:
                raise SearchError(item, f"{text!r} is listed twice")
            try:
                check_value(target, text)
            except ValueError as err:
                raise SearchError(item, f"{text!r} does not fit pipeline parameter {name!r} ({target}): {err}") \
                    from None
            texts.append(text)
        return SearchParameter(name, argument, kind, values=tuple(texts), distribution=distribution)
    if space.get("list"):
        raise SearchError(f"{key}.feasibleSpace.list", f"an {kind} parameter takes min/max/step, not a list")
    if target not in _RANGE_TARGETS[kind]:
        raise SearchError(f"{key}.parameterType", f"{kind} values do not fit pipeline parameter {name!r}, which is "
                          f"{target}; use a categorical list")
    integer = kind == "int"
    bounds = {}
    for bound in ("min", "max"):
        if space.get(bound) in (None, ""):
            raise SearchError(f"{key}.feasibleSpace.{bound}", f"missing: an {kind} parameter needs min and max")
        bounds[bound] = _number_text(space[bound], f"{key}.feasibleSpace.{bound}", integer)
    if float(bounds["min"]) > float(bounds["max"]):
        raise SearchError(f"{key}.feasibleSpace", f"min {bounds['min']} is above max {bounds['max']}")
    step = None
    if space.get("step") not in (None, ""):
        step = _number_text(space["step"], f"{key}.feasibleSpace.step", integer)
        if float(step) <= 0:
            raise SearchError(f"{key}.feasibleSpace.step", f"must be above 0, got {step}")
    if distribution in ("logUniform", "logNormal") and float(bounds["min"]) <= 0:
        raise SearchError(f"{key}.feasibleSpace.min", f"a {distribution} distribution needs min above 0")
    return SearchParameter(name, argument, kind, bounds["min"], bounds["max"], step, distribution=distribution)


def _metric(name: Any, key: str, metrics: Sequence[str]) -> str:
    """The pipeline-metrics variable a Katib metric name means (Kale wrote ``a_b`` as ``a-b``)."""
    if not isinstance(name, str) or not name:
        raise SearchError(key, "missing: name a pipeline-metrics variable")
    for variable in metrics:
        if name == variable or name == variable.replace("_", "-"):
            return variable
    known = ", ".join(metrics) or "none (tag a cell pipeline-metrics)"
    raise SearchError(key, f"{name!r} is not a pipeline-metrics variable (metrics: {known})")


def _count(metadata: Mapping[str, Any], key: str) -> int:
    value = metadata.get(key, DEFAULT_COUNTS[key])
    if value is None:
        value = DEFAULT_COUNTS[key]
    if isinstance(value, str) and value.strip().isdigit():
        if len(value.strip()) > 9:
            raise SearchError(key, f"{value.strip()[:24]}… is more than a search runs (at most {MOST_TRIALS})")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SearchError(key, f"expected a whole number, got {value!r}")
    if value < 1:
        raise SearchError(key, f"must be at least 1, got {value}")
    if value > MOST_TRIALS:
        raise SearchError(key, f"{str(value)[:24]} is more than a search runs (at most {MOST_TRIALS})")
    return value


def grid_size(parameters: Sequence[SearchParameter]) -> int:
    """How many points a grid over ``parameters`` has (every range needs a step)."""
    size = 1
    for p in parameters:
        size *= len(p.values) if p.values else grid_count(p)
    return size


def grid_count(parameter: SearchParameter) -> int:
    """How many grid values a range parameter has: min, min + step, ... up to max."""
    low, high, step = float(parameter.minimum or 0), float(parameter.maximum or 0), float(parameter.step or 0)
    points = (high - low) / step
    if not math.isfinite(points):
        raise SearchError(f"parameters.{parameter.name}", f"a step of {parameter.step} over {parameter.minimum} to "
                          f"{parameter.maximum} gives more grid points than a number holds")
    return int(math.floor(points + 1e-9)) + 1


def parse(metadata: Any, parameters: Mapping[str, tuple[str, str]], metrics: Sequence[str],
          check_value: Callable[[str, str], None], warn: Callable[[str], None] = lambda message: None) -> Search:
    """Check ``katib_metadata`` against the pipeline and return the search.

    ``parameters`` maps each pipeline parameter (as the notebook names it) to its argument name for
    ``-p`` and its type (``int``, ``float``, ``str``, ``bool``, ``list``, ``dict`` or ``literal``);
    ``metrics`` lists the ``pipeline-metrics`` variables; ``check_value(type, text)`` raises
    ``ValueError`` when a listed value does not fit a parameter. What Katib would refuse but a search
    can do without (stale algorithm settings) is passed to ``warn`` and left out.
    """
    if not isinstance(metadata, dict):
        raise SearchError("", f"expected an object, got {type(metadata).__name__}")
    entries = metadata.get("parameters")
    if not isinstance(entries, list) or not entries:
        raise SearchError("parameters", "no parameters to search: list the pipeline parameters with their "
                          "feasibleSpace")
    searched: list[SearchParameter] = []
    for index, entry in enumerate(entries):
        parameter = _parameter(entry, index, parameters, check_value)
        if any(p.name == parameter.name for p in searched):
            raise SearchError(f"parameters[{index}].name", f"{parameter.name!r} is searched twice")
        searched.append(parameter)

    objective = metadata.get("objective")
    if not isinstance(objective, dict):
        raise SearchError("objective", "missing: give type (maximize or minimize) and objectiveMetricName")
    goal_type = objective.get("type")
    if goal_type not in ("maximize", "minimize"):
        raise SearchError("objective.type", f"{goal_type!r} is not maximize or minimize")
    metric = objective.get("objectiveMetricName")
    variable = _metric(metric, "objective.objectiveMetricName", metrics)
    goal = objective.get("goal")
    if goal is not None:
        if isinstance(goal, bool) or not isinstance(goal, (int, float, str)):
            raise SearchError("objective.goal", f"expected a number, got {goal!r}")
        goal = float(_number_text(goal, "objective.goal", integer=False))
    additional: list[tuple[str, str]] = []
    extra = objective.get("additionalMetricNames") or []
    if not isinstance(extra, list):
        raise SearchError("objective.additionalMetricNames", f"expected a list of metric names, got {extra!r}")
    for position, name in enumerate(extra):
        if name == metric:
            warn(f"{METADATA_KEY}.objective.additionalMetricNames[{position}]: {name!r} is the objective "
                 "itself; left out (Katib refuses it there)")
            continue
        additional.append((name, _metric(name, f"objective.additionalMetricNames[{position}]", metrics)))

    algorithm = metadata.get("algorithm")
    if not isinstance(algorithm, dict):
        raise SearchError("algorithm", "missing: give algorithmName (grid, random, ...)")
    name = algorithm.get("algorithmName")
    if not isinstance(name, str):
        raise SearchError("algorithm.algorithmName", f"expected the name of an algorithm ({', '.join(ALGORITHMS)}), "
                          f"got {str(name)[:60]}")
    if name in NAS_ALGORITHMS:
        raise SearchError("algorithm.algorithmName", f"{name!r} is Katib's neural architecture search, which "
                          "searches a network, not pipeline parameters")
    if name not in ALGORITHMS:
        raise SearchError("algorithm.algorithmName", f"{name!r} is not a Katib algorithm "
                          f"({', '.join(ALGORITHMS)})")
    settings: list[tuple[str, str]] = []
    for position, setting in enumerate(algorithm.get("algorithmSettings") or []):
        key = f"algorithm.algorithmSettings[{position}]"
        if not isinstance(setting, dict) or not isinstance(setting.get("name"), str):
            raise SearchError(key, f"expected an object with name and value, got {setting!r}")
        if setting["name"] not in ALGORITHMS[name]:
            warn(f"{METADATA_KEY}.{key}: setting {setting['name']!r} does not apply to {name} (it takes "
                 f"{', '.join(ALGORITHMS[name]) or 'no settings'}); left out")
            continue
        value = setting.get("value")
        settings.append((setting["name"], "" if value is None else str(value)))

    counts = {key: _count(metadata, key) for key in DEFAULT_COUNTS}
    if counts["parallelTrialCount"] > counts["maxTrialCount"]:
        raise SearchError("parallelTrialCount", f"{counts['parallelTrialCount']} is above maxTrialCount "
                          f"{counts['maxTrialCount']}")
    if counts["maxFailedTrialCount"] > counts["maxTrialCount"]:
        raise SearchError("maxFailedTrialCount", f"{counts['maxFailedTrialCount']} is above maxTrialCount "
                          f"{counts['maxTrialCount']}")
    if name == "grid":
        for index, p in enumerate(searched):
            if not p.values and p.step is None:
                raise SearchError(f"parameters[{index}].feasibleSpace.step",
                                  f"grid search needs a step for {p.type} parameter {p.name!r}")
        size = grid_size(searched)
        if counts["maxTrialCount"] > size:
            warn(f"{METADATA_KEY}.maxTrialCount: {counts['maxTrialCount']} is more than the {size} points of the "
                 f"grid; the search runs {size} trials (Katib refuses more)")
            counts["maxTrialCount"] = size
            counts["parallelTrialCount"] = min(counts["parallelTrialCount"], size)
            counts["maxFailedTrialCount"] = min(counts["maxFailedTrialCount"], size)
    if name == "cmaes" and sum(p.type in ("int", "double") for p in searched) < 2:
        raise SearchError("algorithm.algorithmName", "cmaes needs two or more int or double parameters")
    return Search(tuple(searched), Objective(metric, variable, goal_type, goal, tuple(additional)), name,
                  tuple(settings), counts["maxTrialCount"], counts["parallelTrialCount"],
                  counts["maxFailedTrialCount"])
