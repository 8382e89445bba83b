"""Lazy dependencies: distributions a library imports only when a call needs them.

``df.plot()`` makes pandas import matplotlib, ``df.to_parquet(...)`` pyarrow, ``read_excel``
openpyxl: the notebook imports only pandas, its environment has the others, so a local run
works while a step that installs only what the code imports fails. :data:`LAZY_DEPENDENCIES`
is the one table of such uses; the scope analysis (:mod:`nbconvert_kfp.analysis.scope`) hands
it each node of the syntax tree as it walks it, and :func:`matches` dispatches on the node's
type. An entry applies to a step only when the step uses its library (``library``): a
``.plot`` attribute means matplotlib where pandas is imported, nothing in a step without it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

#: Path prefixes that pandas hands to fsspec, and the distribution that implements each.
REMOTE_PATHS = {"s3://": "s3fs", "s3a://": "s3fs", "gs://": "gcsfs", "gcs://": "gcsfs", "az://": "adlfs",
                "abfs://": "adlfs", "abfss://": "adlfs", "hf://": "huggingface-hub"}
#: pandas' readers and writers that take a path (or URL) as first argument.
PANDAS_IO = frozenset({
    "read_csv", "read_table", "read_json", "read_parquet", "read_excel", "read_feather", "read_orc", "read_pickle",
    "read_xml", "read_fwf", "read_stata", "read_sas", "read_spss", "to_csv", "to_json", "to_parquet", "to_excel",
    "to_feather", "to_orc", "to_pickle", "to_xml", "to_stata"})


@dataclass(frozen=True)
class LazyDependency:
    """One lazy use: calling or reaching ``names`` (``node``: the syntax the use takes) makes one of
    the ``library`` modules import ``distributions``; ``when`` narrows the match (a keyword's value)."""

    library: tuple[str, ...]
    use: str
    distributions: tuple[str, ...]
    node: type[ast.AST]
    names: frozenset[str]
    when: Callable[[ast.AST], bool] | None = None


def _keyword(node: ast.AST, name: str) -> object:
    """The literal value of keyword argument ``name`` of a call (None when absent or not a literal)."""
    for keyword in getattr(node, "keywords", []):
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def _kind_is_density(node: ast.AST) -> bool:
    return _keyword(node, "kind") in ("density", "kde")


def _under_plot(node: ast.AST) -> bool:
    """``x.plot.kde``: the attribute's object is a ``.plot`` accessor."""
    value = getattr(node, "value", None)
    return isinstance(value, ast.Attribute) and value.attr == "plot"


def _engine(*engines: str) -> Callable[[ast.AST], bool]:
    def check(node: ast.AST) -> bool:
        return _keyword(node, "engine") in engines

    return check


def _not_engine(*engines: str) -> Callable[[ast.AST], bool]:
    def check(node: ast.AST) -> bool:
        return _keyword(node, "engine") not in engines

    return check


def _on_display_class(node: ast.AST) -> bool:
    """``ConfusionMatrixDisplay.from_estimator``: the object's name ends with ``Display``."""
    value = getattr(node, "value", None)
    name = value.attr if isinstance(value, ast.Attribute) else getattr(value, "id", "")
    return name.endswith("Display")


def _path(node: ast.AST) -> str:
    """The literal path a reader or writer call names (first argument or ``path``-like keyword), or ''."""
    found = [k.value for k in getattr(node, "keywords", []) if k.arg in ("path", "path_or_buf", "filepath_or_buffer",
                                                                          "io", "excel_writer")]
    args = getattr(node, "args", [])
    value = found[0] if found else args[0] if args else None
    return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else ""


def _remote(prefixes: tuple[str, ...]) -> Callable[[ast.AST], bool]:
    def check(node: ast.AST) -> bool:
        return _path(node).lower().startswith(prefixes)

    return check


def _frame_unless_false(node: ast.AST) -> bool:
    return _keyword(node, "as_frame") is not False


def _frame_true(node: ast.AST) -> bool:
    return _keyword(node, "as_frame") is True


def _remote_entries() -> list[LazyDependency]:
    by_distribution: dict[str, list[str]] = {}
    for prefix, distribution in REMOTE_PATHS.items():
        by_distribution.setdefault(distribution, []).append(prefix)
    return [LazyDependency(("pandas",), f"a pandas reader or writer on a {' or '.join(prefixes)} path",
                           (distribution,), ast.Call, PANDAS_IO, _remote(tuple(prefixes)))
            for distribution, prefixes in by_distribution.items()]


_PLOTTING = ("pandas", "sklearn", "xarray", "geopandas")
_NETWORKX_DRAW = frozenset({"draw", "draw_networkx", "draw_networkx_nodes", "draw_networkx_edges",
                            "draw_networkx_labels", "draw_networkx_edge_labels", "draw_circular", "draw_kamada_kawai",
                            "draw_random", "draw_shell", "draw_spectral", "draw_spring", "draw_planar"})

#: The lazy dependencies nbconvert-kfp knows: every entry is listed in docs/packages.md's table.
LAZY_DEPENDENCIES: tuple[LazyDependency, ...] = (
    LazyDependency(_PLOTTING, "DataFrame.plot / Series.plot (and scikit-learn's Display.plot)", ("matplotlib",),
                   ast.Attribute, frozenset({"plot"})),
    LazyDependency(("pandas",), "DataFrame.hist / Series.hist / DataFrame.boxplot", ("matplotlib",), ast.Attribute,
                   frozenset({"hist", "boxplot"})),
    LazyDependency(("pandas",), "pandas.plotting", ("matplotlib",), ast.Attribute, frozenset({"plotting"})),
    LazyDependency(("pandas",), "pandas.plotting", ("matplotlib",), ast.ImportFrom, frozenset({"pandas.plotting"})),
    LazyDependency(("pandas",), ".plot(kind='density' or 'kde')", ("scipy",), ast.Call, frozenset({"plot"}),
                   _kind_is_density),
    LazyDependency(("pandas",), ".plot.kde() / .plot.density()", ("scipy",), ast.Attribute,
                   frozenset({"kde", "density"}), _under_plot),
    LazyDependency(("pandas",), "read_parquet / to_parquet", ("pyarrow",), ast.Call,
                   frozenset({"read_parquet", "to_parquet"}), _not_engine("fastparquet")),
    LazyDependency(("pandas",), "read_parquet / to_parquet (engine='fastparquet')", ("fastparquet",), ast.Call,
                   frozenset({"read_parquet", "to_parquet"}), _engine("fastparquet")),
    LazyDependency(("pandas",), "read_feather / to_feather / read_orc / to_orc", ("pyarrow",), ast.Call,
                   frozenset({"read_feather", "to_feather", "read_orc", "to_orc"})),
    LazyDependency(("pandas",), "read_excel / to_excel / ExcelWriter", ("openpyxl",), ast.Call,
                   frozenset({"read_excel", "to_excel", "ExcelWriter"}), _not_engine("xlsxwriter", "odf", "xlrd",
                                                                                   "pyxlsb", "calamine")),
    LazyDependency(("pandas",), "to_excel / ExcelWriter (engine='xlsxwriter')", ("xlsxwriter",), ast.Call,
                   frozenset({"to_excel", "ExcelWriter"}), _engine("xlsxwriter")),
    LazyDependency(("pandas",), "read_sql / read_sql_query / read_sql_table / to_sql", ("sqlalchemy",), ast.Call,
                   frozenset({"read_sql", "read_sql_query", "read_sql_table", "to_sql"})),
    LazyDependency(("pandas",), "to_markdown", ("tabulate",), ast.Call, frozenset({"to_markdown"})),
    LazyDependency(("pandas",), "to_latex / Styler (.style)", ("jinja2",), ast.Call,
                   frozenset({"to_latex", "highlight_max", "highlight_min", "highlight_null", "set_properties",
                              "set_table_styles", "background_gradient", "text_gradient"})),
    LazyDependency(("pandas",), "Styler.background_gradient / text_gradient", ("matplotlib",), ast.Call,
                   frozenset({"background_gradient", "text_gradient"})),
    LazyDependency(("pandas",), "read_html / read_xml / to_xml", ("lxml",), ast.Call,
                   frozenset({"read_html", "read_xml", "to_xml"})),
    LazyDependency(("pandas",), "read_hdf / to_hdf / HDFStore", ("tables",), ast.Call,
                   frozenset({"read_hdf", "to_hdf", "HDFStore"})),
    *_remote_entries(),
    LazyDependency(("tqdm",), "tqdm.notebook", ("ipywidgets",), ast.ImportFrom, frozenset({"tqdm.notebook"})),
    LazyDependency(("tqdm",), "tqdm.notebook", ("ipywidgets",), ast.Import, frozenset({"tqdm.notebook"})),
    LazyDependency(("sklearn",), "sklearn.tree.plot_tree", ("matplotlib",), ast.Call, frozenset({"plot_tree"})),
    LazyDependency(("sklearn",), "*Display.from_estimator / from_predictions", ("matplotlib",), ast.Attribute,
                   frozenset({"from_estimator", "from_predictions"}), _on_display_class),
    LazyDependency(("sklearn",), "fetch_openml (unless as_frame=False)", ("pandas",), ast.Call,
                   frozenset({"fetch_openml"}), _frame_unless_false),
    LazyDependency(("sklearn",), "a dataset loader with as_frame=True", ("pandas",), ast.Call,
                   frozenset({"load_iris", "load_wine", "load_breast_cancer", "load_diabetes", "load_digits",
                              "load_linnerud", "fetch_california_housing", "fetch_covtype", "fetch_kddcup99"}),
                   _frame_true),
    LazyDependency(("xgboost", "lightgbm"), "plot_importance / plot_metric / plot_tree", ("matplotlib",), ast.Call,
                   frozenset({"plot_importance", "plot_metric", "plot_split_value_histogram", "plot_tree"})),
    LazyDependency(("xgboost", "lightgbm"), "plot_tree / to_graphviz / create_tree_digraph", ("graphviz",), ast.Call,
                   frozenset({"plot_tree", "to_graphviz", "create_tree_digraph"})),
    LazyDependency(("networkx",), "networkx.draw*", ("matplotlib",), ast.Call, _NETWORKX_DRAW),
    LazyDependency(("statsmodels",), "plot_acf / plot_pacf / qqplot", ("matplotlib",), ast.Call,
                   frozenset({"plot_acf", "plot_pacf", "qqplot", "plot_diagnostics", "plot_regress_exog"})),
    LazyDependency(("plotly",), "Figure.write_image / to_image", ("kaleido",), ast.Call,
                   frozenset({"write_image", "to_image"})),
)


def _called(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _import_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement names: ``from tqdm import notebook`` names ``tqdm`` and ``tqdm.notebook``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not node.module or node.level:
        return []
    return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]


#: What to match a node of each type against: node type -> the names it goes by.
_NAMES: dict[type, Callable[[ast.AST], list[str]]] = {
    ast.Attribute: lambda node: [node.attr] if isinstance(node.ctx, ast.Load) else [],  # type: ignore[attr-defined]
    ast.Call: lambda node: [name] if (name := _called(node)) else [],  # type: ignore[arg-type]
    ast.Import: _import_names,  # type: ignore[dict-item]
    ast.ImportFrom: _import_names,  # type: ignore[dict-item]
}


def _index() -> dict[type, dict[str, tuple[LazyDependency, ...]]]:
    index: dict[type, dict[str, tuple[LazyDependency, ...]]] = {kind: {} for kind in _NAMES}
    for entry in LAZY_DEPENDENCIES:
        for name in entry.names:
            index[entry.node][name] = index[entry.node].get(name, ()) + (entry,)
    return index


#: node type -> name -> the entries a node of that type and name may be a use of.
_INDEX = _index()


def matches(node: ast.AST) -> list[LazyDependency]:
    """The entries a syntax node is a use of (a node of another type is none)."""
    index = _INDEX.get(node.__class__)
    if index is None:
        return []
    if node.__class__ is ast.Attribute and node.attr not in index:  # type: ignore[attr-defined]
        return []  # the common case, made quick: most attributes are no use of any entry
    found: list[LazyDependency] = []
    for name in _NAMES[node.__class__](node):
        for entry in index.get(name, ()):
            if entry not in found and (entry.when is None or entry.when(node)):
                found.append(entry)
    return found


def found_in(tree: ast.AST) -> Iterator[LazyDependency]:
    """Every use in a tree (a function's definition re-run in another step)."""
    for node in ast.walk(tree):
        yield from matches(node)


def used_library(libraries: Iterable[str], modules: Iterable[str]) -> str | None:
    """Which of the ``libraries`` (an entry's ``library``) a step that imports ``modules`` (its own, its
    prelude's, its inputs') uses, or None."""
    tops = {module.partition(".")[0] for module in modules}
    return next((library for library in libraries if library in tops), None)
