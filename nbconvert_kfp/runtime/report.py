"""Report: a step's cells and their outputs, captured as they run and rendered as one HTML page.

This module runs inside pipeline steps and uses only the standard library; it uses
IPython's formatters and matplotlib when the step has imported them. Standard output
and error still stream live to the step's log while they are recorded.
"""

from __future__ import annotations

import base64
import html
import io
import re
import sys
import traceback
from typing import Any

#: Richest first: the representation a report shows for a displayed object.
MIME_ORDER = ("text/html", "image/svg+xml", "image/png", "image/jpeg", "text/markdown", "text/latex",
              "application/json", "text/plain")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class CellRecord:
    """One cell as it ran: its index, source and outputs (nbformat-shaped dicts)."""

    def __init__(self, label: int | str, source: str):
        self.label = label
        self.source = source
        self.outputs: list[dict[str, Any]] = []

    def stream(self, name: str, text: str) -> None:
        """Record text written to stdout or stderr, merging consecutive writes."""
        if self.outputs and self.outputs[-1].get("output_type") == "stream" and self.outputs[-1]["name"] == name:
            self.outputs[-1]["text"] += text
        else:
            self.outputs.append({"output_type": "stream", "name": name, "text": text})

    def display(self, data: dict[str, Any], result: bool = False) -> None:
        """Record a displayed object (``result``: the cell's last expression, Jupyter's Out[])."""
        self.outputs.append({"output_type": "execute_result" if result else "display_data", "data": data})

    def error(self, error: BaseException) -> None:
        """Record an exception with the frames of the notebook's code."""
        frames = traceback.extract_tb(error.__traceback__)
        user = [f for f in frames if f.filename.startswith("<cell ") or not f.filename.startswith("<")]
        text = "Traceback (most recent call last):\n" + "".join(traceback.format_list(user or frames))
        text += "".join(traceback.format_exception_only(type(error), error))
        self.outputs.append({"output_type": "error", "ename": type(error).__name__,
                             "evalue": str(error), "traceback": text})


class Tee(io.TextIOBase):
    """A text stream that writes through to the real stream and records into the current cell."""

    def __init__(self, name: str, target: Any, report: "Report"):
        self.name = name
        self.target = target
        self.report = report

    def write(self, text: str) -> int:
        """Write to the log and record."""
        self.target.write(text)
        if self.report.current is not None:
            self.report.current.stream(self.name, text)
        return len(text)

    def flush(self) -> None:
        """Flush the real stream."""
        self.target.flush()

    def isatty(self) -> bool:
        """Tell what the real stream tells."""
        return bool(getattr(self.target, "isatty", lambda: False)())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The real stream's encoding."""
        return getattr(self.target, "encoding", "utf-8")

    def fileno(self) -> int:
        """The real stream's descriptor (subprocesses write there directly, unrecorded)."""
        return self.target.fileno()


def mime_bundle(obj: Any) -> dict[str, Any]:
    """Format an object as Jupyter would: IPython's formatters when loaded, else its repr."""
    if "IPython" in sys.modules:
        try:
            from IPython.core.interactiveshell import InteractiveShell

            if InteractiveShell.initialized():
                data, _ = InteractiveShell.instance().display_formatter.format(obj)
            else:
                from IPython.core.formatters import DisplayFormatter

                data, _ = DisplayFormatter().format(obj)
            return data
        except Exception:  # a broken _repr_html_ must not fail the step
            pass
    bundle = {"text/plain": repr(obj)}
    to_html = getattr(obj, "_repr_html_", None)
    if callable(to_html):
        try:
            rendered = to_html()
            if rendered:
                bundle["text/html"] = rendered
        except Exception:
            pass
    return bundle


def figures() -> list[dict[str, Any]]:
    """PNG bundles of the open matplotlib figures, which are then closed (as Jupyter's inline backend does)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    bundles = []
    for number in pyplot.get_fignums():
        buffer = io.BytesIO()
        pyplot.figure(number).savefig(buffer, format="png", bbox_inches="tight")
        bundles.append({"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                        "text/plain": f"<Figure {number}>"})
    pyplot.close("all")
    return bundles


class Report:
    """The cells a step runs, with what each printed, displayed, returned and raised."""

    def __init__(self, step: str):
        self.step = step
        self.cells: list[CellRecord] = []
        self.current: CellRecord | None = None

    def begin(self, label: int | str, source: str) -> CellRecord:
        """Start recording a cell."""
        self.current = CellRecord(label, source)
        self.cells.append(self.current)
        return self.current

    def end(self) -> None:
        """Finish the current cell, collecting its matplotlib figures."""
        if self.current is not None:
            for bundle in figures():
                self.current.display(bundle)
        self.current = None

    def html(self) -> str:
        """Render the report as a standalone HTML page in the look of a notebook."""
        body = "\n".join(_cell_html(cell) for cell in self.cells if isinstance(cell.label, int))
        title = html.escape(f"Step {self.step!r}")
        return _PAGE.replace("{title}", title).replace("{body}", body)


def _output_html(output: dict[str, Any]) -> str:
    kind = output["output_type"]
    if kind == "stream":
        css = "stderr" if output["name"] == "stderr" else "stdout"
        return f'<pre class="out {css}">{html.escape(_ANSI.sub("", output["text"]))}</pre>'
    if kind == "error":
        return f'<pre class="out error">{html.escape(_ANSI.sub("", output["traceback"]))}</pre>'
    data = output["data"]
    mime = next((m for m in MIME_ORDER if m in data), None)
    value = data.get(mime, "")
    if isinstance(value, list):
        value = "".join(value)
    if mime == "text/html":
        return f'<div class="out html">{value}</div>'
    if mime == "image/svg+xml":
        return f'<div class="out image">{value}</div>'
    if mime in ("image/png", "image/jpeg"):
        return f'<div class="out image"><img src="data:{mime};base64,{value}" alt="figure"></div>'
    return f'<pre class="out">{html.escape(str(value))}</pre>'


def _cell_html(cell: CellRecord) -> str:
    outputs = "\n".join(_output_html(o) for o in cell.outputs)
    failed = any(o["output_type"] == "error" for o in cell.outputs)
    return (f'<section class="cell{" failed" if failed else ""}">'
            f'<div class="prompt">[{cell.label}]</div>'
            f'<div class="body"><pre class="input">{html.escape(cell.source)}</pre>{outputs}</div></section>')


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #212121; }
h1 { font-size: 1.2rem; font-weight: 600; }
.cell { display: flex; margin: 0.8rem 0; }
.prompt { width: 4.5rem; flex: none; color: #303f9f; font-family: monospace; padding-top: 0.45rem; }
.body { flex: 1; min-width: 0; }
pre { margin: 0; padding: 0.45rem 0.6rem; white-space: pre-wrap; word-break: break-word;
      font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.input { background: #f5f5f5; border: 1px solid #e0e0e0; border-radius: 2px; }
.out { border: none; }
.stderr { background: #fdd; }
.error { background: #fdd; color: #b71c1c; }
.failed .input { border-color: #e57373; }
.html, .image { padding: 0.45rem 0.6rem; overflow-x: auto; }
.html table { border-collapse: collapse; font-size: 12px; }
.html th, .html td { border: none; padding: 0.25rem 0.6rem; text-align: right; }
.html tr:nth-child(even) { background: #f5f5f5; }
.html thead { border-bottom: 1px solid #9e9e9e; }
img { max-width: 100%; }
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""
