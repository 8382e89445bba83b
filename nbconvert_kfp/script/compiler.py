"""Compiler: a pipeline function written as KFP IR YAML, with a header comment that stays a comment.

Uses the standard library and kfp only; the generated script carries it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: What YAML reads as a line break: each of these would end a comment line.
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
#: Characters a YAML stream may not hold at all (besides tab), or that terminals act on.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufeff\ufffe\uffff]")


def comment(text: str) -> str:
    """``text`` as YAML comment lines: every line starts with ``#``, control characters escaped.

    kfp prints parameter defaults and the description raw into the header comment of
    the file it compiles; a line break in one of them would otherwise end the comment
    and let the rest of the value become YAML, and a control character would make the
    whole file unreadable.
    """
    lines = _LINE_BREAK.split(text.rstrip("\n"))
    escaped = (_UNPRINTABLE.sub(lambda match: repr(match.group())[1:-1], line) for line in lines)
    return "".join(line + "\n" if line.startswith("#") else f"#    {line}\n" for line in escaped)


def _commented_header(extract: Any) -> Any:
    """kfp's header comment maker, wrapped so that its output is only comment lines."""
    if getattr(extract, "nbconvert_kfp_safe", False):
        return extract

    def safe_extract(*args: Any, **kwargs: Any) -> str:
        return comment(extract(*args, **kwargs))

    safe_extract.nbconvert_kfp_safe = True  # type: ignore[attr-defined]
    return safe_extract


def _guard_header() -> None:
    """Make kfp's compiler write its header comment through :func:`comment` (once per process)."""
    from kfp.compiler import pipeline_spec_builder

    name = "extract_comments_from_pipeline_spec"
    extract = getattr(pipeline_spec_builder, name, None)
    if extract is None:
        raise RuntimeError(f"this kfp version has no {name}; nbconvert-kfp cannot keep its header a comment")
    setattr(pipeline_spec_builder, name, _commented_header(extract))


def write_ir(pipeline: Any, path: Path | str, arguments: dict[str, Any] | None = None,
             caching: bool | None = None) -> Path:
    """Compile ``pipeline`` (a ``@dsl.pipeline`` function) to IR YAML at ``path``; ``arguments``
    override parameter defaults; ``caching=False`` turns KFP's cache off for every step."""
    from kfp import compiler

    _guard_header()
    path = Path(path)
    tasks = pipeline.pipeline_spec.root.dag.tasks if caching is not None else {}
    saved = {name: task.caching_options.enable_cache for name, task in tasks.items()}
    try:
        for task in tasks.values():
            task.caching_options.enable_cache = caching
        compiler.Compiler().compile(pipeline, str(path), pipeline_parameters=arguments or None)
    finally:
        for name, enabled in saved.items():
            tasks[name].caching_options.enable_cache = enabled
    return path
