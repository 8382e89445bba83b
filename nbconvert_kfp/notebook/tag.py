"""The cell tag language: one tag string becomes one typed ``Tag``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from ..errors import TagError
from .stepoption import PREFIXES


class TagKind(str, Enum):
    """What a recognised tag asks for."""

    STEP = "step"
    PREV = "prev"
    IMPORTS = "imports"
    FUNCTIONS = "functions"
    SKIP = "skip"
    PARAMETERS = "parameters"
    METRICS = "metrics"
    STEP_OPTION = "step-option"


#: Names of steps that Kale 0.1 notebooks use for the shared prelude (``block:imports``).
PRELUDE_STEP_NAMES = {"imports": TagKind.IMPORTS, "functions": TagKind.FUNCTIONS}

#: Prefixes of step option tags (resources, image, retries, ...): see stepoption.py.
STEP_OPTION_PREFIXES = tuple(PREFIXES)

_NAME_SEPARATORS = re.compile(r"[;]")
_PREV_SEPARATORS = re.compile(r"[;:]")


@dataclass(frozen=True)
class Tag:
    """A parsed tag: its kind, the step names it carries and the text it came from."""

    kind: TagKind
    text: str
    names: tuple[str, ...] = field(default=())


def _split_names(text: str, value: str, separators: re.Pattern[str], cell_index: int) -> tuple[str, ...]:
    names = tuple(part.strip() for part in separators.split(value))
    if not names or any(not name for name in names):
        raise TagError(f"tag {text!r} has an empty step name", cell_index, text)
    return names


def parse_tag(
    text: str,
    cell_index: int,
    *,
    step_prefixes: tuple[str, ...],
    prev_prefix: str,
    imports_tags: tuple[str, ...],
    functions_tags: tuple[str, ...],
    skip_tags: tuple[str, ...],
    parameters_tags: tuple[str, ...],
    metrics_tags: tuple[str, ...],
) -> Tag | None:
    """Parse one tag; return ``None`` for tags that are not ours (``hide-input``, ...)."""
    stripped = text.strip()
    for prefix in step_prefixes:
        if stripped.startswith(prefix):
            value = stripped[len(prefix):]
            if not value.strip():  # Kale 1.x's labextension wrote empty 'block:' tags: no step named
                return Tag(TagKind.STEP, text)
            names = _split_names(text, value, _NAME_SEPARATORS, cell_index)
            return Tag(TagKind.STEP, text, names)
    if stripped.startswith(prev_prefix):
        names = _split_names(text, stripped[len(prev_prefix):], _PREV_SEPARATORS, cell_index)
        return Tag(TagKind.PREV, text, names)
    for tags, kind in (
        (imports_tags, TagKind.IMPORTS),
        (functions_tags, TagKind.FUNCTIONS),
        (skip_tags, TagKind.SKIP),
        (parameters_tags, TagKind.PARAMETERS),
        (metrics_tags, TagKind.METRICS),
    ):
        if stripped in tags:
            return Tag(kind, text)
    if stripped.startswith(STEP_OPTION_PREFIXES):
        return Tag(TagKind.STEP_OPTION, text)
    return None
