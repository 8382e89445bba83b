"""Figure: the matplotlib backend of a step with a report, which puts each shown figure in place.

A step with a report selects this module as matplotlib's backend (``MPLBACKEND``), so
``plt.show()`` records the open figures in the running cell's outputs at that point, between
what the cell printed before and after, as Jupyter's inline backend does. Figures still open
when a cell ends are recorded then. Drawing is matplotlib's Agg; matplotlib is imported only
when the step uses it.
"""

from __future__ import annotations

from typing import Any

#: The value of ``MPLBACKEND`` that selects this backend (a step imports this module only through matplotlib).
BACKEND = "module://nbconvert_kfp.runtime.figure"


def _backend() -> None:
    """matplotlib's backend interface, as module attributes: the Agg canvas and the plain figure manager."""
    try:
        from matplotlib.backend_bases import FigureManagerBase
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:  # imported without matplotlib: nothing to draw
        return
    globals().update(FigureCanvas=FigureCanvasAgg, FigureManager=FigureManagerBase)


_backend()


def show(*args: Any, **kwargs: Any) -> None:
    """``plt.show()``: record the open figures in the running cell's outputs, then close them."""
    from .report import active

    report = active()
    if report is not None:
        report.show_figures()
