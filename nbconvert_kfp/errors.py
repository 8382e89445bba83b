"""Errors raised while converting a notebook into a KFP pipeline."""

from __future__ import annotations

import logging

from nbconvert.utils.exceptions import ConversionException


class KFPExportError(ConversionException):
    """Root of every nbconvert-kfp conversion error.

    ``jupyter nbconvert`` prints a ``ConversionException`` without a traceback and
    exits 1, so every problem the user must fix in the notebook derives from it.
    ``cell_index`` is the 0-based index of the notebook cell at fault; the message shows it
    as JupyterLab numbers cells, from 1 (``None`` when
    the problem is not in one cell) and ``subject`` the tag or name at fault.
    """

    def __init__(self, message: str, cell_index: int | None = None, subject: str | None = None):
        self.message = message
        self.cell_index = cell_index
        self.subject = subject
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"cell {self.cell_index + 1}: " if self.cell_index is not None else ""
        return f"{where}{self.message}"

    def __reduce__(self):
        """Pickle with the original arguments so the error crosses process boundaries."""
        return (type(self), (self.message, self.cell_index, self.subject))


class TagError(KFPExportError):
    """A cell tag is malformed or names a step that does not exist."""


class PipelineGraphError(KFPExportError):
    """The steps do not form a valid DAG (cycle, or data read from a non-ancestor)."""


class CellSourceError(KFPExportError):
    """A cell's Python source cannot be parsed."""


class ParameterError(KFPExportError):
    """A parameters cell holds something other than assignments of literals."""


class MetricError(KFPExportError):
    """A pipeline-metrics cell names something that is not a variable."""


class NotebookError(KFPExportError):
    """The notebook as a whole cannot become a pipeline (kernel language, no steps)."""


class TracebackFilter(logging.Filter):
    """Logging filter that prints a ``KFPExportError`` as its message instead of a traceback.

    ``jupyter nbconvert`` logs conversion errors with ``exc_info``; for errors in the
    user's notebook the message says everything and a traceback only hides it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the traceback of a KFPExportError record by its message."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, KFPExportError):
            record.msg = f"{record.getMessage()}: {error}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True

    @classmethod
    def install(cls, logger: logging.Logger | logging.LoggerAdapter) -> None:
        """Add the filter to ``logger`` once."""
        target = logger.logger if isinstance(logger, logging.LoggerAdapter) else logger
        if not any(isinstance(f, cls) for f in target.filters):
            target.addFilter(cls())
