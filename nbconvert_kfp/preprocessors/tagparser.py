"""Tag parser: the first preprocessor, grouping tagged cells into pipeline steps."""

from __future__ import annotations

import functools
from typing import Any

from nbconvert.preprocessors import Preprocessor
from traitlets import Int, List, Unicode

from ..errors import CellSourceError, NotebookError, TagError
from ..model import RESOURCE_KEY, Cell, cell_number, Metric, Parameter, Step
from ..notebook.ipython import python_source
from ..notebook.metric import split_metrics
from ..notebook.parameter import parse_parameters
from ..notebook.stepoption import parse_step_option
from ..notebook.tag import PRELUDE_STEP_NAMES, Tag, TagKind, parse_tag

#: Name of the single step of a notebook that has no step tags at all.
WHOLE_NOTEBOOK_STEP = "notebook"
#: Longest markdown cell a step's report shows (the text travels in the step's command).
MAX_MARKDOWN = 4000


def _cell_tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [tags] if isinstance(tags, str) else list(tags)


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _check_unicode(text: str, index: int, what: str) -> None:
    """Reject text holding a lone surrogate: it cannot be written as UTF-8, nor compiled."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        char = text[err.start]
        raise CellSourceError(f"the cell's {what} holds the lone surrogate {ascii(char)}, which is not valid "
                              "Unicode (was a character cut in half?)", index, ascii(char)) from None


def _record(index: int, raw: str) -> Cell:
    """A cell of the model: its index, plain-Python source and, where IPython syntax was translated, the original."""
    source = python_source(raw)
    cell: Cell = {"index": index, "source": source}
    if source != raw:
        cell["original"] = raw
    return cell


def _kernel_language(nb: Any) -> str | None:
    metadata = nb.get("metadata", {})
    language = metadata.get("kernelspec", {}).get("language") or metadata.get("language_info", {}).get("name")
    return language.lower() if isinstance(language, str) else None


#: The step a pipeline-metrics cell that holds code becomes.
METRICS_STEP = "pipeline-metrics"


class TagParser(Preprocessor):
    """Read the Kale tag language and store the steps in ``resources["kfp"]``.

    Code cells are grouped into steps (``step:``/``block:``), prelude cells
    (``imports``/``functions``), parameters, metrics; ``prev:`` tags give explicit
    dependencies. The notebook itself is not modified.
    """

    step_tag_prefixes = List(
        Unicode(), default_value=["step:", "block:"],
        help="Tag prefixes that put a cell into a pipeline step (Kale 2.x 'step:', Kale 0.1 'block:').",
    ).tag(config=True)
    prev_tag_prefix = Unicode(
        "prev:", help="Tag prefix naming the steps a step runs after ('prev:a;b').",
    ).tag(config=True)
    imports_tags = List(
        Unicode(), default_value=["imports"],
        help="Tags marking cells of imports, run at the start of every step.",
    ).tag(config=True)
    functions_tags = List(
        Unicode(), default_value=["functions"],
        help="Tags marking cells of shared functions, run in every step after the imports.",
    ).tag(config=True)
    skip_tags = List(
        Unicode(), default_value=["skip"], help="Tags marking cells left out of the pipeline.",
    ).tag(config=True)
    parameters_tags = List(
        Unicode(), default_value=["pipeline-parameters", "parameters"],
        help="Tags marking cells whose literal assignments become pipeline parameters "
        "(Kale's 'pipeline-parameters' and papermill's 'parameters').",
    ).tag(config=True)
    strict_parameters_tags = List(
        Unicode(), default_value=["pipeline-parameters"],
        help="Parameters-cell tags whose cells may hold only assignments of literals (Kale's rule). Other "
        "parameters cells follow papermill: their other statements run at the start of every step.",
    ).tag(config=True)
    metrics_tags = List(
        Unicode(), default_value=["pipeline-metrics"],
        help="Tags marking the cell that lists the variables logged as KFP metrics.",
    ).tag(config=True)
    max_steps = Int(
        0, help="The most steps a notebook may have (0: no limit); more stops the conversion at once, naming the "
        "first step past the limit. A KFP cluster runs a few hundred steps of a pipeline at most (Argo refuses a "
        "Workflow over 1 MiB).",
    ).tag(config=True)

    def _parse_tags(self, cell: Any, index: int) -> list[Tag]:
        parsed = (
            parse_tag(
                text, index,
                step_prefixes=tuple(self.step_tag_prefixes), prev_prefix=self.prev_tag_prefix,
                imports_tags=tuple(self.imports_tags), functions_tags=tuple(self.functions_tags),
                skip_tags=tuple(self.skip_tags), parameters_tags=tuple(self.parameters_tags),
                metrics_tags=tuple(self.metrics_tags),
            )
            for text in _cell_tags(cell)
        )
        return [tag for tag in parsed if tag is not None]

    def _metric_line_ignored(self, index: int, line: str) -> None:
        self.log.warning("cell %d: pipeline-metrics line %r names no variable; it is not a metric and is left out",
                         cell_number(index), line)

    def _role(self, tags: list[Tag], index: int) -> tuple[TagKind | None, tuple[str, ...]]:
        """Decide what a cell is, with Kale's precedence when several roles are tagged."""
        empty = [tag for tag in tags if tag.kind is TagKind.STEP and not tag.names]
        if empty:
            self.log.warning("cell %d: tag %r names no step (Kale 1.x wrote such tags); the cell continues the "
                             "step above it, as in Kale", cell_number(index), empty[0].text)
            tags = [tag for tag in tags if tag not in empty]
        kinds = {tag.kind for tag in tags}
        step_names = tuple(name for tag in tags if tag.kind is TagKind.STEP for name in tag.names)
        prelude = {PRELUDE_STEP_NAMES[name] for name in step_names if name in PRELUDE_STEP_NAMES}
        if prelude and len(prelude) != len(set(step_names)):
            raise TagError(
                f"a cell cannot be both in the shared prelude ({', '.join(sorted(p.value for p in prelude))}) "
                f"and in steps {', '.join(n for n in step_names if n not in PRELUDE_STEP_NAMES)}",
                index, ";".join(step_names))
        kinds |= prelude
        roles = [k for k in (TagKind.SKIP, TagKind.PARAMETERS, TagKind.METRICS, TagKind.IMPORTS,
                             TagKind.FUNCTIONS) if k in kinds]
        if roles:
            ignored = [t.text for t in tags if t.kind not in (roles[0], TagKind.STEP_OPTION, TagKind.PREV)
                       and not (t.kind is TagKind.STEP and prelude)]
            if ignored and roles[0] is not TagKind.SKIP:
                self.log.warning("cell %d is a %s cell; its tags %s are ignored", cell_number(index),
                                 roles[0].value, ", ".join(ignored))
            return roles[0], ()
        if step_names:
            return TagKind.STEP, tuple(dict.fromkeys(step_names))
        return None, ()

    def preprocess(self, nb: Any, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Group the notebook's cells into steps and store the result in resources."""
        language = _kernel_language(nb)
        if language is not None and language != "python":
            raise NotebookError(f"the notebook's kernel language is {language!r}; only Python "
                                "notebooks can become KFP pipelines", None, language)
        imports: list[Cell] = []
        functions: list[Cell] = []
        parameter_code: list[Cell] = []
        parameters: dict[str, Parameter] = {}
        metrics: list[Metric] = []
        steps: dict[str, Step] = {}
        leftover: list[int] = []
        continued_prelude: list[int] = []
        current: tuple[TagKind | None, tuple[str, ...]] = (None, ())
        pipeline = resources.get(RESOURCE_KEY, {}).get("pipeline", {})
        defaults = [parse_step_option(text, None) for text in pipeline.get("steps_defaults") or []]
        any_step_tag = False

        notes: dict[int, list[Cell]] = {}  # the markdown cells before each code cell
        pending: list[Cell] = []
        for index, cell in enumerate(nb.cells):
            if cell.get("cell_type") == "markdown" and _source(cell).strip():
                pending.append({"index": index, "source": _source(cell)[:MAX_MARKDOWN]})
            if cell.get("cell_type") != "code":
                continue
            notes[index], pending = pending, []
            raw = _source(cell)
            _check_unicode(raw, index, "source")
            for text in _cell_tags(cell):
                _check_unicode(text, index, "tag")
            tags = self._parse_tags(cell, index)
            role, names = self._role(tags, index)
            if role is TagKind.SKIP:
                continue
            continued = role is None
            if continued:
                role, names = current
            elif role not in (TagKind.PARAMETERS, TagKind.METRICS):
                # A parameters or metrics cell is one cell (papermill's convention): the
                # untagged cells after it continue what came before it.
                current = (role, names)
            any_step_tag = any_step_tag or role is TagKind.STEP
            prevs = [{"step": name, "cell": index, "tag": tag.text}
                     for tag in tags if tag.kind is TagKind.PREV for name in tag.names]
            if prevs and role is not TagKind.STEP:
                # Kale ignores prev: on the prelude and on cells before the first step
                self.log.warning("cell %d: %s ignored: the cell belongs to no step (%s)", cell_number(index),
                                 ", ".join(repr(p["tag"]) for p in prevs),
                                 f"it is a {role.value} cell" if role is not None else "no step tag comes before it")
                prevs = []
            if continued:
                own = [p for p in prevs if p["step"] in names]
                if own:
                    self.log.warning("cell %d: tag %r names step %r, which this cell belongs to (it has no step tag "
                                     "and continues the step above); it is ignored", cell_number(index), own[0]["tag"],
                                     own[0]["step"])
                    prevs = [p for p in prevs if p not in own]
            options = [parse_step_option(tag.text, index) for tag in tags if tag.kind is TagKind.STEP_OPTION]
            if options and role is not TagKind.STEP:
                text = next(tag.text for tag in tags if tag.kind is TagKind.STEP_OPTION)
                raise TagError(f"tag {text!r} is on a cell that belongs to no step", index, text)
            if not raw.strip():
                continue
            record = _record(index, raw)
            if role is TagKind.PARAMETERS:
                strict = any(tag.kind is TagKind.PARAMETERS and tag.text.strip() in self.strict_parameters_tags
                             for tag in tags)
                found, code = parse_parameters(record["source"], index, strict=strict)
                for parameter in found:
                    parameters.pop(parameter["name"], None)
                    parameters[parameter["name"]] = parameter
                if code:
                    record["role"] = "parameters"
                    parameter_code.append(record)
                    shown = ", ".join(line if len(line) <= 40 else line[:39] + "…" for line in code[:3])
                    self.log.info("cell %d: the parameters cell's other statements (%s%s) run at the start of every "
                                  "step, before the parameter values of the run are set", cell_number(index), shown,
                                  ", …" if len(code) > 3 else "")
            elif role is TagKind.METRICS:
                listed, code = split_metrics(record["source"], index, functools.partial(
                    self._metric_line_ignored, index))
                metrics.extend({"name": name, "cell": index} for name in listed
                               if all(m["name"] != name for m in metrics))
                if code:
                    # a cell that computes its summary: its code runs as a step of its own, after the steps it reads
                    name = next(n for n in (METRICS_STEP, *(f"{METRICS_STEP}-{k}" for k in range(2, 100)))
                                if n not in steps)
                    steps[name] = {"name": name, "cells": [record], "prev": [], "options": list(defaults)}
                    self.log.info("cell %d: the pipeline-metrics cell holds code besides the variables it lists: it "
                                  "runs as the step %r, after the steps whose variables it reads%s",
                                  cell_number(index), name,
                                  f"; it logs {', '.join(listed)}" if listed else "; it lists no variable to log")
            elif role in (TagKind.IMPORTS, TagKind.FUNCTIONS):
                (imports if role is TagKind.IMPORTS else functions).append(record)
                if continued:
                    continued_prelude.append(index)
            elif role is TagKind.STEP:
                for name in names:
                    step = steps.setdefault(name, {"name": name, "cells": [], "prev": [], "options": list(defaults)})
                    step["cells"].append(record)
                    step["options"].extend(options)
                    for prev in prevs:
                        if all(p["step"] != prev["step"] for p in step["prev"]):
                            step["prev"].append(prev)
            else:
                leftover.append(index)

        if not any_step_tag and continued_prelude:
            # Without step tags, untagged code after an imports cell is the notebook's body.
            imports = [c for c in imports if c["index"] not in continued_prelude]
            functions = [c for c in functions if c["index"] not in continued_prelude]
            leftover = sorted(leftover + continued_prelude)
        if not any_step_tag and leftover:
            steps[WHOLE_NOTEBOOK_STEP] = {
                "name": WHOLE_NOTEBOOK_STEP, "prev": [], "options": list(defaults),
                "cells": [_record(i, _source(nb.cells[i])) for i in leftover],
            }
            self.log.info("the notebook has no step tags: it becomes a single step %r", WHOLE_NOTEBOOK_STEP)
        elif leftover:
            self.log.warning("cells %s come before the first step tag and are left out of the pipeline",
                             ", ".join(str(cell_number(i)) for i in leftover))
        if not steps:
            raise NotebookError("the notebook has no code to run: tag cells with 'step:<name>'")
        if 0 < self.max_steps < len(steps):
            first = list(steps.values())[self.max_steps]
            raise NotebookError(f"the notebook has {len(steps)} steps, more than the {self.max_steps} this conversion "
                                "takes (a KFP cluster runs a few hundred steps of a pipeline at most: Argo refuses a "
                                f"Workflow over 1 MiB); merge steps, from step {first['name']!r} on",
                                first["cells"][0]["index"], first["name"])
        for step in steps.values():
            markdown = [note for cell in step["cells"] for note in notes.get(cell["index"], [])]
            if markdown:
                step["markdown"] = markdown
            for prev in step["prev"]:
                if prev["step"] not in steps:
                    known = ", ".join(n if n.isprintable() else repr(n) for n in sorted(steps))
                    raise TagError(f"tag {prev['tag']!r} names step {prev['step']!r}, which does not exist "
                                   f"(steps: {known})", prev["cell"], prev["tag"])

        resources[RESOURCE_KEY] = {
            **resources.get(RESOURCE_KEY, {}),
            "prelude": imports + parameter_code + functions,
            "parameters": list(parameters.values()),
            "metrics": metrics,
            "steps": list(steps.values()),
        }
        return nb, resources
