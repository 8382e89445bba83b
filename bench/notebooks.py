"""Notebooks the benchmarks generate: a large tagged notebook and trivial N-step notebooks."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}

IMPORTS = """\
import math
import statistics
from collections import Counter

import numpy as np
"""

FUNCTIONS = '''\
def clip_values(values, low, high):
    """Clip every value into [low, high]."""
    return [min(max(v, low), high) for v in values]


def describe(values):
    """Count, mean and spread of a list of numbers."""
    if not values:
        return {"n": 0, "mean": 0.0, "spread": 0.0}
    return {"n": len(values), "mean": statistics.fmean(values), "spread": max(values) - min(values)}
'''

PARAMETERS = """\
N_ROWS = 200
SCALE = 1.5
LOW = -10.0
HIGH = 1000.0
RUN_NAME = "bench"
USE_LOG = False
"""


def _step_cells(k: int, source_expr: str, helper_of_hub: str | None) -> list[str]:
    """Ten code cells of step ``k``: realistic data-science-ish Python, reading ``source_expr``."""
    s = f"s{k:03d}"
    cells = [
        f"# step {s}: read the upstream data\n"
        f"rows_{k} = [float(x) for x in {source_expr}]\n"
        f"print('{s}', len(rows_{k}), 'rows')",

        f"def transform_{k}(values, scale=SCALE):\n"
        f"    \"\"\"Scale and shift the values of step {s}.\"\"\"\n"
        f"    out = []\n"
        f"    for v in values:\n"
        f"        out.append(math.log1p(abs(v)) if USE_LOG else v * scale + {k % 7})\n"
        f"    return out",

        f"from itertools import islice\n"
        f"mean_{k} = statistics.fmean(rows_{k}) if rows_{k} else 0.0\n"
        f"head_{k} = list(islice(rows_{k}, 5))",

        f"scaled_{k} = transform_{k}(rows_{k})\n"
        f"buckets_{k} = Counter(int(v) % 7 for v in scaled_{k})",

        f"summary_{k} = {{\n"
        f"    \"step\": \"{s}\",\n"
        f"    \"run\": RUN_NAME,\n"
        f"    \"n\": len(scaled_{k}),\n"
        f"    \"mean\": mean_{k},\n"
        f"    \"top\": buckets_{k}.most_common(3),\n"
        f"}}",

        f"class Accumulator{k}:\n"
        f"    \"\"\"Running total used by step {s}.\"\"\"\n"
        f"\n"
        f"    def __init__(self):\n"
        f"        self.total = 0.0\n"
        f"        self.count = 0\n"
        f"\n"
        f"    def add(self, value):\n"
        f"        self.total += value\n"
        f"        self.count += 1\n"
        f"        return self",

        f"acc_{k} = Accumulator{k}()\n"
        f"for value in scaled_{k}[:100]:\n"
        f"    acc_{k}.add(value)\n"
        f"summary_{k}[\"total\"] = acc_{k}.total",

        f"arr_{k} = np.asarray(scaled_{k}, dtype=float)\n"
        f"std_{k} = float(arr_{k}.std()) if arr_{k}.size else 0.0\n"
        f"stats_{k} = describe(scaled_{k})",

        f"clipped_{k} = clip_values(scaled_{k}, LOW, HIGH)\n"
        + (f"check_{k} = {helper_of_hub}(clipped_{k}[:5])\n" if helper_of_hub else "")
        + f"assert len(clipped_{k}) == len(scaled_{k})",

        f"data_{s} = clipped_{k}[:N_ROWS]\n"
        f"score_{s} = round(std_{k} + mean_{k} * 0.01, 4)\n"
        f"print(summary_{k}, stats_{k}[\"n\"], score_{s})",
    ]
    return cells


def large_notebook(n_cells: int = 1000, n_steps: int = 100, group: int = 10) -> nbformat.NotebookNode:
    """A tagged notebook of exactly ``n_cells`` cells in ``n_steps`` steps.

    Steps come in groups of ``group``: a hub step (``prev:`` the previous group's join),
    ``group - 2`` branch steps that fan out from the hub (``prev:<hub>``) and a join step
    (``prev:<branch>;<branch>;...``) that reads every branch's data and calls a function
    the hub step defined. The notebook starts with a markdown title and imports, functions
    and pipeline-parameters cells and ends with a pipeline-metrics cell.
    """
    fixed = 5  # title, imports, functions, parameters, metrics
    if n_steps % group or group < 3:
        raise ValueError("n_steps must be a multiple of group (>= 3)")
    per_step, extra = divmod(n_cells - fixed, n_steps)
    if not (per_step == 9 or (per_step == 10 and extra == 0)):
        raise ValueError("choose n_cells so that every step gets 9 or 10 cells")

    cells = [
        new_markdown_cell(f"# Benchmark notebook\n\n{n_steps} steps in fan-out / fan-in groups of {group}."),
        new_code_cell(IMPORTS.rstrip(), metadata={"tags": ["imports"]}),
        new_code_cell(FUNCTIONS.rstrip(), metadata={"tags": ["functions"]}),
        new_code_cell(PARAMETERS.rstrip(), metadata={"tags": ["pipeline-parameters"]}),
    ]
    # Steps that get 10 cells: the first `extra` steps when per_step is 9; all when per_step is 10.
    previous_join: int | None = None
    for g in range(n_steps // group):
        hub = g * group
        branches = list(range(hub + 1, hub + group - 1))
        join = hub + group - 1
        for k in range(hub, join + 1):
            if k == hub:
                source = "range(N_ROWS)" if previous_join is None else f"data_s{previous_join:03d}"
                prev = [] if previous_join is None else [f"s{previous_join:03d}"]
                helper = None
            elif k == join:
                source = " + ".join(f"data_s{b:03d}" for b in branches)
                prev = [f"s{b:03d}" for b in branches]
                helper = f"transform_{hub}"
            else:
                source = f"data_s{hub:03d}"
                prev = [f"s{hub:03d}"]
                helper = None
            sources = _step_cells(k, source, helper)
            wanted = 10 if (per_step == 10 or k < extra) else 9
            if wanted == 9:  # merge the last two cells
                sources = sources[:8] + [sources[8] + "\n" + sources[9]]
            tags = [f"step:s{k:03d}"] + ([f"prev:{';'.join(prev)}"] if prev else [])
            cells.append(new_code_cell(sources[0], metadata={"tags": tags}))
            cells.extend(new_code_cell(src) for src in sources[1:])
        previous_join = join
    last = n_steps - 1
    cells.append(new_code_cell(f"print(score_s{last:03d})\nprint(score_s{last - group:03d})\nprint(SCALE)",
                               metadata={"tags": ["pipeline-metrics"]}))
    if len(cells) != n_cells:
        raise AssertionError(f"generated {len(cells)} cells, wanted {n_cells}")
    return new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC,
                                               "language_info": {"name": "python"}})


def trivial_notebook(n_steps: int) -> nbformat.NotebookNode:
    """``n_steps`` independent steps ``s0``..; each one code cell ``x<i> = 0`` (no data flow)."""
    cells = [new_code_cell(f"x{i} = 0", metadata={"tags": [f"step:s{i}"]}) for i in range(n_steps)]
    return new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC,
                                               "language_info": {"name": "python"}})


def _cell(source: str, tags: list[str]) -> nbformat.NotebookNode:
    return new_code_cell(source, metadata={"tags": tags})


def _notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    return new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})


def chain_notebook(n_steps: int) -> nbformat.NotebookNode:
    """``n_steps`` steps in a chain: step i adds one to step i-1's variable; an imports cell."""
    cells = [_cell("import math", ["imports"]), _cell("x0 = 1", ["step:s0"])]
    cells += [_cell(f"x{i} = x{i - 1} + 1", [f"step:s{i}"]) for i in range(1, n_steps)]
    return _notebook(cells)


def big_cell_notebook(kind: str, size: int = 10 * 1024 * 1024) -> nbformat.NotebookNode:
    """One step whose one cell holds ``size`` bytes: ``data`` (a list literal of numbers), ``assignments``
    (one statement a line, each reading the one before) or ``functions`` (small function definitions)."""
    parts: list[str] = []
    total, i = 0, 0
    while total < size:
        if kind == "data":
            part = f"{i * 0.125:.3f}, " if i else "DATA = ["
        elif kind == "assignments":
            part = f"value_{i} = (value_{i - 1} if {i} else 0) * 3 + len('text {i}') - min({i}, 7)\n" if i \
                else "value_0 = 1\n"
        else:
            part = f"def feature_{i}(rows, scale={i % 7}):\n    return sum(r * scale for r in rows if r > {i % 13})\n\n"
        parts.append(part)
        total += len(part)
        i += 1
    source = "".join(parts) + ("0]\n" if kind == "data" else "\n")
    return _notebook([_cell(source, ["step:big"]), _cell("print('done')", ["step:after", "prev:big"])])
