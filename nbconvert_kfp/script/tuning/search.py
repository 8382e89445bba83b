"""Search algorithms of a local tuning run: which parameter values each trial gets.

One table, :data:`LOCAL_ALGORITHMS`, maps a Katib algorithm name to the sampler that runs it here:
``grid`` and ``random`` are built in (standard library); ``tpe`` and ``multivariate-tpe`` use Optuna's
TPE sampler, as Katib's own suggestion service does, when Optuna is installed (``pip install optuna``).
The other Katib algorithms run on a cluster only (:mod:`.katib`). A sampler hands out assignments,
``{parameter name: value as Katib's string}``, and is told each trial's objective.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Protocol

from .searchspace import Search, SearchParameter, grid_count
from ..exceptions import ScriptError

Assignment = dict[str, str]


class SearchUnavailable(ScriptError):
    """The algorithm cannot run on this machine; the message says what to do."""


class Sampler(Protocol):
    """Hands out the parameter values of the next trial and learns each trial's result."""

    def ask(self) -> Assignment | None:
        """The next trial's values, or ``None`` when the algorithm has no more points."""

    def tell(self, assignment: Assignment, value: float | None) -> None:
        """Report a trial's objective (``None``: the trial failed); ``assignment`` is the very dict ``ask``
        returned."""


def double_text(value: float) -> str:
    """A double as the short text a trial receives (``0.3``, not ``0.30000000000000004``)."""
    return repr(float(f"{value:.12g}"))


def grid_value(parameter: SearchParameter, index: int) -> str:
    """The ``index``-th grid point of one parameter, as Katib's grid suggestion makes them (none is listed ahead)."""
    if parameter.values:
        return parameter.values[index]
    low, step = float(parameter.minimum or 0), float(parameter.step or 0)
    if parameter.type == "int":
        return str(int(low) + index * int(step))
    return double_text(low + index * step)


def grid_values(parameter: SearchParameter) -> list[str]:
    """The grid points of one parameter, as Katib's grid suggestion makes them."""
    return [grid_value(parameter, i) for i in range(grid_count(parameter))]


#: The most grid points sampled as a set of distinct indexes at once (random.sample over a range of this size).
_SAMPLE_MAX = 2 ** 62


class GridSearch:
    """Every point of the grid, in order; when ``max_trials`` is smaller, a seeded random choice of them. Points
    are made one at a time from their index, so a grid of any size costs only the trials it runs."""

    def __init__(self, search: Search, seed: int):
        self._parameters = search.parameters
        self._counts = [len(p.values) if p.values else grid_count(p) for p in search.parameters]
        total = math.prod(self._counts)
        if total <= search.max_trials:
            self._indexes = iter(range(total))
        elif total <= _SAMPLE_MAX:
            self._indexes = iter(random.Random(seed).sample(range(total), search.max_trials))
        else:
            draw = random.Random(seed)
            self._indexes = iter(dict.fromkeys(draw.randrange(total) for _ in range(search.max_trials)))

    def ask(self) -> Assignment | None:
        """The next grid point."""
        index = next(self._indexes, None)
        if index is None:
            return None
        point = {}
        for parameter, count in zip(reversed(self._parameters), reversed(self._counts)):  # the last varies fastest
            index, position = divmod(index, count)
            point[parameter.name] = grid_value(parameter, position)
        return {p.name: point[p.name] for p in self._parameters}

    def tell(self, assignment: Assignment, value: float | None) -> None:
        """A grid does not learn."""


class RandomSearch:
    """Independent draws from each feasible space (uniform or logUniform; ranges with a step are quantized)."""

    def __init__(self, search: Search, seed: int):
        self._parameters = search.parameters
        self._random = random.Random(seed)

    def _draw(self, p: SearchParameter) -> str:
        if p.values:
            return self._random.choice(p.values)
        low, high = float(p.minimum or 0), float(p.maximum or 0)
        if p.step is not None:
            return grid_value(p, self._random.randrange(grid_count(p)))
        if p.distribution in ("logUniform", "logNormal"):
            value = math.exp(self._random.uniform(math.log(low), math.log(high)))
        else:
            share = self._random.random()
            value = low * (1 - share) + high * share  # never beyond the range, even for ranges near ±1e308
        if p.type == "int":
            return str(min(int(high), max(int(low), round(value))))
        return double_text(value)

    def ask(self) -> Assignment | None:
        """A fresh draw."""
        return {p.name: self._draw(p) for p in self._parameters}

    def tell(self, assignment: Assignment, value: float | None) -> None:
        """Random search does not learn."""


class OptunaSearch:
    """Optuna's TPE sampler through its ask-and-tell interface (Katib's ``tpe`` and ``multivariate-tpe``)."""

    def __init__(self, search: Search, seed: int):
        try:
            import optuna
        except ImportError:
            raise SearchUnavailable(f"algorithm {search.algorithm!r} runs locally with Optuna, which is not "
                                    "installed: pip install optuna (or search with grid or random, or on the "
                                    "cluster with --katib-experiment)") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        options: dict[str, Any] = {"seed": seed, "constant_liar": True,
                                   "multivariate": search.algorithm == "multivariate-tpe"}
        for setting in ("n_startup_trials", "n_ei_candidates"):
            if search.setting(setting):
                options[setting] = int(search.setting(setting) or 0)
        self._optuna = optuna
        self._study = optuna.create_study(direction=search.objective.type,
                                          sampler=optuna.samplers.TPESampler(**options))
        self._distributions = {p.name: self._distribution(p) for p in search.parameters}
        self._trials: dict[int, tuple[Any, Assignment]] = {}
        self._types = {p.name: p.type for p in search.parameters}

    def _distribution(self, p: SearchParameter) -> Any:
        distributions = self._optuna.distributions
        if p.values:
            return distributions.CategoricalDistribution(list(p.values))
        log = p.distribution in ("logUniform", "logNormal")
        if p.type == "int":
            return distributions.IntDistribution(int(p.minimum or 0), int(p.maximum or 0), log=log,
                                                 step=int(p.step) if p.step and not log else 1)
        return distributions.FloatDistribution(float(p.minimum or 0), float(p.maximum or 0), log=log,
                                               step=float(p.step) if p.step and not log else None)

    def ask(self) -> Assignment | None:
        """Optuna's next suggestion."""
        trial = self._study.ask(self._distributions)
        assignment = {name: (double_text(value) if self._types[name] == "double" else str(value))
                      for name, value in trial.params.items()}
        self._trials[id(assignment)] = (trial, assignment)
        return assignment

    def tell(self, assignment: Assignment, value: float | None) -> None:
        """Tell Optuna the trial's objective, or that it failed."""
        trial, _ = self._trials.pop(id(assignment))
        if value is None:
            self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(trial, value)


#: Katib algorithm name -> the sampler that runs it on this machine.
LOCAL_ALGORITHMS: dict[str, Callable[[Search, int], Sampler]] = {
    "grid": GridSearch,
    "random": RandomSearch,
    "tpe": OptunaSearch,
    "multivariate-tpe": OptunaSearch,
}


def sampler(search: Search, seed: int) -> Sampler:
    """The sampler of the search's algorithm; raise :class:`SearchUnavailable` for a cluster-only one."""
    make = LOCAL_ALGORITHMS.get(search.algorithm)
    if make is None:
        raise SearchUnavailable(f"algorithm {search.algorithm!r} runs on the cluster only (Katib's suggestion "
                                f"service): write a Katib Experiment with --katib-experiment, or search locally "
                                f"with {', '.join(LOCAL_ALGORITHMS)}")
    for p in search.parameters:
        if p.distribution in ("normal", "logNormal"):
            raise SearchUnavailable(f"parameter {p.name!r}: a {p.distribution} distribution is sampled on the "
                                    "cluster only; locally use uniform or logUniform")
    return make(search, seed)
