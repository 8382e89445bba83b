"""Python literals: values and code rendered as source text that is valid for any input."""

from __future__ import annotations

import math
import re
from typing import Any

_UNSAFE_IN_RAW = {"\r", "\x00", "\x0c", "\x0b", "\x1a"}
#: Control characters other than tab and newline: a raw string cannot hold them as they are.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")


def python_literal(value: Any) -> str:
    """Render a str, number, bool, None, list or dict as a Python expression."""
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        text = repr(value)
        # Prefer double quotes, as formatters do; repr chose single ones only if it could.
        return f'"{text[1:-1]}"' if text.startswith("'") and '"' not in value else text
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    raise TypeError(f"cannot render {type(value).__name__} as a literal")


def code_literal(source: str) -> str:
    """Render code as a readable triple-quoted string whose value is ``"\\n" + source``.

    A final newline is added when the source lacks one, so the closing quotes stand
    on their own line and never touch a quote that ends the code. The leading
    newline keeps the code's first line on a line of its own in the generated
    script; the step runtime drops it. A raw string is used whenever the
    code allows one, so backslashes read as they do in the notebook.
    """
    text = "\n" + source if source.endswith("\n") else "\n" + source + "\n"
    printable = not _CONTROL.search(text)
    for quote in ("'''", '"""'):
        if printable and quote not in text:
            return f"r{quote}{text}{quote}"
    escaped = []
    for ch in text:
        if ch == "\\":
            escaped.append("\\\\")
        elif ch == "'":
            escaped.append("\\'")
        elif ch != "\n" and ch != "\t" and (ord(ch) < 32 or ch in _UNSAFE_IN_RAW):
            escaped.append(f"\\x{ord(ch):02x}")
        else:
            escaped.append(ch)
    return "'''" + "".join(escaped) + "'''"


def docstring(text: str) -> str:
    """A docstring literal: ``\"\"\"text\"\"\"`` where the text allows it, else an ordinary string literal."""
    if '"""' in text or "\\" in text or text.endswith('"') or _CONTROL.search(text) or "\n" in text or "\r" in text:
        return python_literal(text)
    return f'"""{text}"""'
