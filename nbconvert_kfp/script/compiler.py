"""Compiler: a pipeline function written as KFP IR YAML, with a header comment that stays a comment.

Uses the standard library and kfp only; the generated script carries it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: The top-level keys of a compiled pipeline spec: where kfp's header comment ends.
_BODY = re.compile(r"^(components|deploymentSpec|pipelineInfo|root|schemaVersion|sdkVersion):", re.MULTILINE)


def comment_header(path: Path) -> None:
    """Keep the leading comment of a compiled YAML file a comment.

    kfp prints parameter defaults raw into that comment; a default holding a line
    break would end the comment and make the file invalid YAML.
    """
    text = path.read_text(encoding="utf-8")
    body = _BODY.search(text)
    if body is None:
        return
    lines = re.split(r"\r\n|[\r\n\x85\u2028\u2029]", text[:body.start()].rstrip("\n"))
    header = "".join(line + "\n" if line.startswith("#") else f"#    {line}\n" for line in lines)
    path.write_text(header + text[body.start():], encoding="utf-8")


def write_ir(pipeline: Any, path: Path | str, arguments: dict[str, Any] | None = None,
             caching: bool | None = None) -> Path:
    """Compile ``pipeline`` (a ``@dsl.pipeline`` function) to IR YAML at ``path``; ``arguments``
    override parameter defaults; ``caching=False`` turns KFP's cache off for every step."""
    from kfp import compiler

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
    comment_header(path)
    return path
