"""Report: a step's cells and their outputs, captured as they run and rendered as one HTML page.

This module runs inside pipeline steps and uses only the standard library; it uses
IPython's formatters, pygments and matplotlib when the step has them. Standard output
and error still stream live to the step's log while they are recorded. Outputs keep
the order they came in: a figure shown between two prints stands between them.
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
#: Parameter names whose values a report does not show.
SECRET_NAME = re.compile(r"pass(word|wd)?|secret|token|credential|api_?key|private", re.IGNORECASE)
#: Longest parameter value a report shows in full.
MAX_VALUE = 120
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: The report cells are recorded into (a step has one).
_active: Report | None = None


def active() -> Report | None:
    """The report of the step that is running, if it has one."""
    return _active


def user_traceback(error: BaseException) -> str:
    """The traceback of ``error`` from the first frame in a notebook cell on (the runtime's frames say
    nothing about the notebook)."""
    frames = traceback.extract_tb(error.__traceback__)
    first = next((i for i, frame in enumerate(frames) if frame.filename.startswith("<cell ")), None)
    if first is None:
        return "".join(traceback.format_exception_only(type(error), error))
    return "".join(["Traceback (most recent call last):\n", *traceback.format_list(frames[first:]),
                    *traceback.format_exception_only(type(error), error)])


class CellRecord:
    """One cell as it ran: its label (cell number), source, kind and outputs (nbformat-shaped dicts)."""

    def __init__(self, label: int | str, source: str, prelude: bool = False, kind: str = "code"):
        self.label = label
        self.source = source
        self.prelude = prelude
        self.kind = kind
        self.outputs: list[dict[str, Any]] = []

    @property
    def failed(self) -> bool:
        """Whether the cell raised."""
        return any(o["output_type"] == "error" for o in self.outputs)

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
        """Record an exception with its traceback from the notebook's cell on."""
        self.outputs.append({"output_type": "error", "ename": type(error).__name__,
                             "evalue": str(error), "traceback": user_traceback(error)})


class Tee(io.TextIOBase):
    """A text stream that writes through to the real stream and records into the current cell."""

    def __init__(self, name: str, target: Any, report: Report):
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
    """Format an object as Jupyter would: IPython's formatters when IPython is installed, else its repr."""
    try:
        from IPython.core.interactiveshell import InteractiveShell

        if InteractiveShell.initialized():
            data, _ = InteractiveShell.instance().display_formatter.format(obj)
        else:
            from IPython.core.formatters import DisplayFormatter

            data, _ = DisplayFormatter().format(obj)
        if data:
            return data
    except Exception:  # no IPython, or a broken _repr_html_: the step goes on
        pass
    bundle = {"text/plain": repr(obj)}
    for mime, method in (("text/html", "_repr_html_"), ("image/png", "_repr_png_")):
        try:
            rendered = getattr(obj, method, None)
            rendered = rendered() if callable(rendered) else None
        except Exception:
            rendered = None
        if isinstance(rendered, bytes):
            rendered = base64.b64encode(rendered).decode("ascii")
        if rendered:
            bundle[mime] = rendered
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
    """The cells a step runs, with what each printed, displayed, returned and raised, and the step's
    outcome, parameters, inputs and outputs."""

    def __init__(self, step: str):
        global _active
        self.step = step
        self.cells: list[CellRecord] = []
        self.current: CellRecord | None = None
        self.parameters: dict[str, str] = {}
        self.inputs: dict[str, str] = {}
        self.outputs: dict[str, str] = {}
        self.state = "running"
        self.seconds = 0.0
        self.failure = ""
        _active = self

    def begin(self, label: int | str, source: str, prelude: bool = False) -> CellRecord:
        """Start recording a cell."""
        self.current = CellRecord(label, source, prelude)
        self.cells.append(self.current)
        return self.current

    def markdown(self, label: int, page: str) -> None:
        """Add a markdown cell of the step, rendered to safe HTML at conversion (shown among the code
        cells by its number)."""
        self.cells.append(CellRecord(label, page, kind="markdown"))

    def show_figures(self) -> None:
        """Record the open matplotlib figures in the current cell, where the output stands now."""
        if self.current is not None:
            for bundle in figures():
                self.current.display(bundle)

    def end(self) -> None:
        """Finish the current cell, collecting its matplotlib figures."""
        self.show_figures()
        self.current = None

    def parameter(self, name: str, value: Any) -> None:
        """Note a parameter's value (shortened; hidden when its name says it is a secret)."""
        text = "(hidden)" if SECRET_NAME.search(name) else repr(value)
        self.parameters[name] = text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"

    def finish(self, error: BaseException | None, seconds: float) -> None:
        """Note the step's outcome; a failure outside any cell (loading, saving) is shown in the header."""
        self.state, self.seconds = ("failed" if error is not None else "succeeded"), seconds
        if error is not None and not any(cell.failed for cell in self.cells):
            self.failure = "".join(traceback.format_exception_only(type(error), error))

    def html(self) -> str:
        """Render the report as a standalone HTML page in the look of a notebook."""
        shown = sorted((c for c in self.cells if not c.prelude and isinstance(c.label, int)),
                       key=lambda c: (c.label, c.kind == "code"))
        prelude = [c for c in self.cells if c.prelude or not isinstance(c.label, int)]
        parts = [self._header()]
        if prelude:
            parts.append(f'<details class="prelude"><summary>prelude: {len(prelude)} cell'
                         f'{"s" if len(prelude) != 1 else ""} that every step runs (imports, functions, '
                         f'parameters)</summary>{"".join(_cell_html(c) for c in prelude)}</details>')
        parts += [_cell_html(c) for c in shown]
        return _page(html.escape(f"Step {self.step!r}"), _PAGE_STYLE + _highlight_style(), "\n".join(parts))

    def _header(self) -> str:
        rows = [("status", f'<span class="status {self.state}">{self.state}</span>'),
                ("duration", f"{self.seconds:.2f} s")]
        for caption, items in (("parameters", self.parameters), ("inputs", self.inputs),
                               ("outputs", self.outputs)):
            if items:
                rows.append((caption, ", ".join(f"<code>{html.escape(k)}</code> {html.escape(v)}"
                                                for k, v in items.items())))
        table = "".join(f'<tr class="{k}"><th>{k}</th><td>{v}</td></tr>' for k, v in rows)
        failure = f'<pre class="out error">{html.escape(self.failure)}</pre>' if self.failure else ""
        return f'<header><h1>Step <code>{html.escape(self.step)}</code></h1><table class="summary">{table}</table>' \
               f"{failure}</header>"


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
    css = "result" if kind == "execute_result" else "display"
    if mime == "text/html":  # the object's own HTML, as Jupyter shows it
        return f'<div class="out {css} html">{value}</div>'
    if mime == "image/svg+xml":
        return f'<div class="out {css} image">{value}</div>'
    if mime in ("image/png", "image/jpeg"):
        return (f'<div class="out {css} image"><img src="data:{mime};base64,{html.escape(str(value))}" '
                f'alt="figure"></div>')
    return f'<pre class="out {css}">{html.escape(_ANSI.sub("", str(value)))}</pre>'


def highlighted(source: str) -> str:
    """Python source as HTML: highlighted by pygments when the step has it, else escaped."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:
        return html.escape(source)
    return highlight(source, PythonLexer(stripnl=False, ensurenl=False), HtmlFormatter(nowrap=True))


def _highlight_style() -> str:
    try:
        from pygments.formatters import HtmlFormatter
    except ImportError:
        return ""
    return HtmlFormatter().get_style_defs(".input") + "\n.input .err { border: none; }\n"


def _cell_html(cell: CellRecord) -> str:
    label = f"cell {cell.label}" if isinstance(cell.label, int) else str(cell.label)
    prompt = f'<div class="prompt">{html.escape(label)}</div>'
    if cell.kind == "markdown":
        return f'<section class="cell markdown">{prompt}<div class="body">{cell.source}</div></section>'
    outputs = "\n".join(_output_html(o) for o in cell.outputs)
    marker = '<div class="marker">this cell failed</div>' if cell.failed else ""
    return (f'<section class="cell code{" failed" if cell.failed else ""}">{prompt}<div class="body">{marker}'
            f'<pre class="input">{highlighted(cell.source)}</pre>{outputs}</div></section>')


_PAGE_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#212121}
h1{font-size:1.2rem;font-weight:600}
.summary{border-collapse:collapse;font-size:13px;margin-bottom:1rem}
.summary th{text-align:left;color:#616161;font-weight:normal;padding:0.15rem 1rem 0.15rem 0}
.status{font-weight:600;padding:0.05rem 0.5rem;border-radius:3px}
.status.succeeded{background:#e8f5e9;color:#1b5e20}
.status.failed{background:#ffebee;color:#b71c1c}
.status.running{background:#fff8e1;color:#8d6e00}
.cell{display:flex;margin:0.8rem 0}
.prompt{width:4.5rem;flex:none;color:#303f9f;font-family:monospace;padding-top:0.45rem}
.body{flex:1;min-width:0}
pre{margin:0;padding:0.45rem 0.6rem;white-space:pre-wrap;word-break:break-word;font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.input{background:#f5f5f5;border:1px solid #e0e0e0;border-radius:2px}
.stderr{background:#fdd}
.error{background:#fdd;color:#b71c1c}
.failed .input{border:2px solid #e53935}
.marker{color:#b71c1c;font-weight:600;font-size:12px;margin-bottom:0.2rem}
.failed .prompt{color:#b71c1c}
.markdown .body{padding:0 0.6rem}
.markdown h1,.markdown h2,.markdown h3{margin:0.3rem 0}
details.prelude{margin:0.8rem 0;color:#616161}
details.prelude summary{cursor:pointer;font-size:13px}
.html,.image{padding:0.45rem 0.6rem;overflow-x:auto}
.html table{border-collapse:collapse;font-size:12px}
.html th,.html td{border:none;padding:0.25rem 0.6rem;text-align:right}
.html tr:nth-child(even){background:#f5f5f5}
.html thead{border-bottom:1px solid #9e9e9e}
img{max-width:100%}
"""

def _page(title: str, style: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>\n'
            f"<style>{style}</style></head>\n<body>\n{body}\n</body></html>\n")
