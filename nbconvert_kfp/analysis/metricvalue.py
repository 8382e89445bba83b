"""Metric values that are not numbers, seen in the code that assigns them.

A metric the pipeline returns is a KFP ``float`` output, which must hold a number when the step
ends. Metrics may also be a dict of scores, a confusion matrix or a ROC curve (the step logs those
to its metrics artifacts): where the last assignment of a metric in its step shows such a value,
the metric is logged and not returned. Only the standard library is used.
"""

from __future__ import annotations

import ast

from .parsedcell import top_level_statements

#: Displays and comprehensions, by what they make.
_DISPLAYS: dict[type, str] = {
    ast.Dict: "a dict", ast.DictComp: "a dict", ast.List: "a list", ast.ListComp: "a list",
    ast.Tuple: "a tuple", ast.Set: "a set", ast.SetComp: "a set", ast.GeneratorExp: "a generator",
    ast.JoinedStr: "a string", ast.Lambda: "a function",
}
#: Calls, by the name called (its last part), and what they return.
_CALLS: dict[str, str] = {
    "dict": "a dict", "list": "a list", "tuple": "a tuple", "set": "a set", "frozenset": "a set", "str": "a string",
    "repr": "a string", "sorted": "a list", "zip": "an iterator", "enumerate": "an iterator", "range": "a range",
    "confusion_matrix": "a confusion matrix", "multilabel_confusion_matrix": "a confusion matrix",
    "roc_curve": "a ROC curve", "precision_recall_curve": "a curve", "det_curve": "a curve",
    "classification_report": "a report", "precision_recall_fscore_support": "a tuple of arrays",
}


def _called(node: ast.expr) -> str | None:
    """The last part of the name a call calls (``metrics.confusion_matrix(...)`` -> ``confusion_matrix``)."""
    func = node.func if isinstance(node, ast.Call) else None
    while isinstance(func, ast.Call):  # ConfusionMatrixDisplay(...).plot()
        func = func.func
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name) and func.value.id.endswith("Display"):
            return func.value.id  # ConfusionMatrixDisplay.from_predictions(...)
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def kind_of(value: ast.expr) -> str | None:
    """What ``value`` evaluates to when that is plainly not a number (``"a dict"``), else None."""
    for node_type, kind in _DISPLAYS.items():
        if isinstance(value, node_type):
            return kind
    if isinstance(value, ast.Constant):
        if isinstance(value.value, (str, bytes)):
            return "a string"
        return "None" if value.value is None else None
    if isinstance(value, ast.Call):
        called = _called(value)
        if called is not None and called.endswith("Display"):
            return "a display"
        return _CALLS.get(called or "")
    return None


def not_a_number(tree: ast.Module, name: str) -> str | None:
    """What the last top-level assignment of ``name`` in ``tree`` binds it to, when that is plainly not a
    number (``"a dict"``, ``"a confusion matrix"``); None when it may be one, or nothing assigns it here."""
    found: str | None = None
    for node in top_level_statements(tree.body):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found = kind_of(node.value) or ""
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name \
                and node.value is not None:
            found = kind_of(node.value) or ""
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.For, ast.With)) and any(
                isinstance(t, ast.Name) and t.id == name for t in ast.walk(node)
                if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)):
            found = ""  # unpacked, augmented or bound by a loop: may be a number
    return found or None
