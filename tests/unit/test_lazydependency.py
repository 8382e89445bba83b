"""Step installs beyond the imports: IPython for IPython syntax, dill, kfp, and the distributions that
libraries import lazily (``df.plot()`` needs matplotlib), read from the syntax tree; each entry of the table
is checked through a conversion."""

from __future__ import annotations

import logging
import re

import pytest
from traitlets.config import Config

from helpers import REPO
from nbconvert_kfp.analysis.lazydependency import LAZY_DEPENDENCIES
from nbconvert_kfp.analysis.packages import distribution_requirement, module_requirement
from nbconvert_kfp.script.local.undeclaredimport import undeclared
from packageversion import installed_version




#: The cases are fragments that read names they do not define (df, model): names are not what they test.
FRAGMENTS = Config({"DependencyAnalyzer": {"undefined_names": "warn"}})


def _installs(pipeline_model, cells, step="a"):
    """The step's install list as ``{canonical name: requirement}``."""
    packages = pipeline_model(cells, config=FRAGMENTS)["steps"][step]["component"]["packages"]
    return {re.sub(r"[-_.]+", "-", p.partition("==")[0]).lower(): p for p in packages}


def _pinned(distribution):
    version = installed_version(distribution)
    return f"{distribution}=={version.partition('+')[0]}" if version else distribution


PANDAS = "import pandas as pd\ndf = pd.DataFrame({'a': [1.0, 2.0]})\n"

#: use (an entry of the table) -> cases: (source of step a, distributions it must install, ones it must not)
CASES = {
    "DataFrame.plot / Series.plot (and scikit-learn's Display.plot)": [
        (PANDAS + "df.plot()", {"matplotlib"}, {"scipy"}),
        (PANDAS + "ax = df['a'].plot.bar()", {"matplotlib"}, {"scipy"}),
        ("from sklearn.metrics import ConfusionMatrixDisplay\nConfusionMatrixDisplay([[1]]).plot()", {"matplotlib"},
         set()),
    ],
    "DataFrame.hist / Series.hist / DataFrame.boxplot": [(PANDAS + "df.hist()", {"matplotlib"}, set()),
                                                         (PANDAS + "df.boxplot()", {"matplotlib"}, set())],
    "pandas.plotting": [(PANDAS + "pd.plotting.scatter_matrix(df)", {"matplotlib"}, set()),
                        ("from pandas.plotting import scatter_matrix", {"matplotlib"}, set())],
    ".plot(kind='density' or 'kde')": [(PANDAS + "df.plot(kind='kde')", {"scipy", "matplotlib"}, set()),
                                       (PANDAS + "df.plot(kind='density')", {"scipy"}, set()),
                                       (PANDAS + "df.plot(kind='line')", {"matplotlib"}, {"scipy"})],
    ".plot.kde() / .plot.density()": [(PANDAS + "df['a'].plot.kde()", {"scipy", "matplotlib"}, set()),
                                      (PANDAS + "df.plot.density()", {"scipy"}, set())],
    "read_parquet / to_parquet": [(PANDAS + "df.to_parquet('d.parquet')", {"pyarrow"}, {"fastparquet"}),
                                  (PANDAS + "d = pd.read_parquet('d.parquet')", {"pyarrow"}, set())],
    "read_parquet / to_parquet (engine='fastparquet')": [
        (PANDAS + "d = pd.read_parquet('d.parquet', engine='fastparquet')", {"fastparquet"}, {"pyarrow"})],
    "read_feather / to_feather / read_orc / to_orc": [(PANDAS + "df.to_feather('d.feather')", {"pyarrow"}, set()),
                                                      (PANDAS + "d = pd.read_orc('d.orc')", {"pyarrow"}, set())],
    "read_excel / to_excel / ExcelWriter": [(PANDAS + "d = pd.read_excel('d.xlsx')", {"openpyxl"}, set()),
                                            (PANDAS + "df.to_excel('d.xlsx')", {"openpyxl"}, {"xlsxwriter"})],
    "to_excel / ExcelWriter (engine='xlsxwriter')": [
        (PANDAS + "df.to_excel('d.xlsx', engine='xlsxwriter')", {"xlsxwriter"}, {"openpyxl"})],
    "read_sql / read_sql_query / read_sql_table / to_sql": [
        (PANDAS + "d = pd.read_sql('select 1', 'sqlite://')", {"sqlalchemy"}, set()),
        (PANDAS + "d = pd.read_sql_table('t', 'sqlite://')", {"sqlalchemy"}, set())],
    "to_markdown": [(PANDAS + "print(df.to_markdown())", {"tabulate"}, set())],
    "to_latex / Styler (.style)": [(PANDAS + "text = df.to_latex()", {"jinja2"}, set()),
                                   (PANDAS + "s = df.style.highlight_max()", {"jinja2"}, {"matplotlib"})],
    "Styler.background_gradient / text_gradient": [
        (PANDAS + "s = df.style.background_gradient()", {"matplotlib", "jinja2"}, set())],
    "read_html / read_xml / to_xml": [(PANDAS + "t = pd.read_html('t.html')", {"lxml"}, set()),
                                      (PANDAS + "df.to_xml('d.xml')", {"lxml"}, set())],
    "read_hdf / to_hdf / HDFStore": [(PANDAS + "df.to_hdf('d.h5', key='d')", {"tables"}, set())],
    "a pandas reader or writer on a s3:// or s3a:// path": [
        (PANDAS + "d = pd.read_csv('s3://bucket/d.csv')", {"s3fs"}, {"gcsfs"}),
        (PANDAS + "df.to_parquet(path='S3A://bucket/d.parquet')", {"s3fs", "pyarrow"}, set()),
        (PANDAS + "d = pd.read_csv('d.csv')", set(), {"s3fs", "gcsfs", "adlfs"})],
    "a pandas reader or writer on a gs:// or gcs:// path": [
        (PANDAS + "d = pd.read_json('gs://bucket/d.json')", {"gcsfs"}, {"s3fs"})],
    "a pandas reader or writer on a az:// or abfs:// or abfss:// path": [
        (PANDAS + "df.to_csv('abfs://box/d.csv')", {"adlfs"}, set())],
    "a pandas reader or writer on a hf:// path": [
        (PANDAS + "d = pd.read_parquet('hf://datasets/x/y.parquet')", {"huggingface-hub", "pyarrow"}, set())],
    "tqdm.notebook": [("from tqdm.notebook import tqdm\nfor i in tqdm(range(2)):\n    pass", {"ipywidgets"}, set()),
                      ("import tqdm.notebook", {"ipywidgets"}, set()),
                      ("from tqdm import notebook", {"ipywidgets"}, set()),
                      ("from tqdm.auto import tqdm", set(), {"ipywidgets"})],
    "sklearn.tree.plot_tree": [
        ("from sklearn.tree import DecisionTreeClassifier, plot_tree\nplot_tree(DecisionTreeClassifier())",
         {"matplotlib"}, {"graphviz"}),
        ("from sklearn import tree\ntree.plot_tree(model)", {"matplotlib"}, set())],
    "*Display.from_estimator / from_predictions": [
        ("from sklearn.metrics import RocCurveDisplay\nRocCurveDisplay.from_predictions([0, 1], [0.2, 0.9])",
         {"matplotlib"}, set()),
        ("from sklearn import metrics\nmetrics.ConfusionMatrixDisplay.from_estimator(m, X, y)", {"matplotlib"}, set()),
        ("import sklearn\nc = Calibrator.from_predictions([0], [1])", set(), {"matplotlib"})],
    "fetch_openml (unless as_frame=False)": [
        ("from sklearn.datasets import fetch_openml\nd = fetch_openml('iris', version=1)", {"pandas"}, set()),
        ("from sklearn.datasets import fetch_openml\nd = fetch_openml('iris', as_frame=False)", set(), {"pandas"})],
    "a dataset loader with as_frame=True": [
        ("from sklearn.datasets import load_iris\nd = load_iris(as_frame=True)", {"pandas"}, set()),
        ("from sklearn.datasets import load_iris\nd = load_iris()", set(), {"pandas"})],
    "plot_importance / plot_metric / plot_tree": [
        ("import xgboost as xgb\nxgb.plot_importance(model)", {"matplotlib"}, {"graphviz"}),
        ("import lightgbm as lgb\nlgb.plot_metric(model)", {"matplotlib"}, set())],
    "plot_tree / to_graphviz / create_tree_digraph": [
        ("import xgboost as xgb\ng = xgb.to_graphviz(model)", {"graphviz"}, {"matplotlib"}),
        ("import xgboost as xgb\nxgb.plot_tree(model)", {"graphviz", "matplotlib"}, set())],
    "networkx.draw*": [("import networkx as nx\nnx.draw(nx.path_graph(3))", {"matplotlib"}, set())],
    "plot_acf / plot_pacf / qqplot": [
        ("from statsmodels.graphics.tsaplots import plot_acf\nplot_acf([1, 2, 3])", {"matplotlib"}, set())],
    "Figure.write_image / to_image": [
        ("import plotly.express as px\npx.line(x=[1], y=[2]).write_image('f.png')", {"kaleido"}, set())],
}


def test_every_entry_of_the_table_has_cases_and_a_row_in_the_docs():
    uses = {entry.use for entry in LAZY_DEPENDENCIES}
    assert uses == set(CASES)
    page = (REPO / "docs" / "packages.md").read_text(encoding="utf-8")
    start = page.index("## Lazy dependencies")
    table = page[start:page.index("\n## ", start)]
    for entry in LAZY_DEPENDENCIES:
        for distribution in entry.distributions:
            assert f"`{distribution}`" in table, distribution


@pytest.mark.parametrize("source, wanted, unwanted", [case for cases in CASES.values() for case in cases])
def test_lazy_dependency_is_installed_pinned_where_the_step_uses_it(pipeline_model, source, wanted, unwanted):
    installs = _installs(pipeline_model, [(["step:a"], source)])
    for distribution in wanted:
        assert installs.get(distribution) == _pinned(distribution), (distribution, installs)
    for distribution in unwanted:
        assert distribution not in installs, (distribution, installs)


@pytest.mark.parametrize("source", ["df.plot()\ndf.to_parquet('x')\ndf.to_markdown()",
                                    "import numpy as np\nnp.histogram([1])\nx = np.ones(2)\nx.plot_tree()"])
def test_no_lazy_dependency_without_the_library_that_needs_it(pipeline_model, source):
    installs = _installs(pipeline_model, [(["step:a"], source)])
    assert not {"matplotlib", "pyarrow", "tabulate", "graphviz"} & set(installs), installs


def test_lazy_dependency_follows_the_code_the_step_runs(pipeline_model):
    model = pipeline_model([
        (["imports"], "import pandas as pd"),
        (["functions"], "def table(frame):\n    return frame.to_markdown()"),
        (["step:load"], "df = pd.DataFrame({'a': [1]})\ndef draw(frame):\n    frame.plot()"),
        (["step:show", "prev:load"], "draw(df)"),  # re-runs load's definition of draw: needs matplotlib
        (["step:other", "prev:load"], "print(len(df))"),
    ])
    for step in ("load", "show", "other"):
        names = {p.partition("==")[0] for p in model["steps"][step]["component"]["packages"]}
        assert "tabulate" in names, (step, names)  # the functions cell runs in every step
        assert ("matplotlib" in names) is (step in ("load", "show")), (step, names)
    uses = {use["use"]: use["cell"] for use in model["steps"]["show"]["lazy"]}  # with the first cell of each use
    assert uses["to_markdown"] == 1 and uses["DataFrame.plot / Series.plot (and scikit-learn's Display.plot)"] == 2


def test_lazy_dependency_not_installed_here_is_one_warning_naming_cell_and_package(pipeline_model, caplog):
    with caplog.at_level(logging.WARNING):
        installs = _installs(pipeline_model, [
            (["step:a"], "x = 1"),
            (["step:b"], PANDAS + "d = pd.read_excel('d.xlsx')\ne = pd.read_excel('e.xlsx')"),
            (["step:c"], PANDAS + "df.to_excel('x')"),
        ], step="b")
    lines = [r.getMessage() for r in caplog.records if "openpyxl" in r.getMessage()]
    if installed_version("openpyxl") is None:
        assert installs["openpyxl"] == "openpyxl"
        assert len(lines) == 1 and lines[0].startswith("cell 2: step 'b' needs openpyxl"), lines
    else:
        assert installs["openpyxl"] == _pinned("openpyxl") and lines == []


# --- what the step runtime and kfp need -----------------------------------------------------------

@pytest.mark.parametrize("source", ["%timeit 1 + 1", "!echo hello", "%matplotlib inline\nx = 1",
                                    "files = !ls", "%%capture out\nprint(1)"])
def test_ipython_syntax_installs_ipython(pipeline_model, source):
    installs = _installs(pipeline_model, [(["step:a"], source)])
    assert installs.get("ipython") == _pinned("ipython"), installs


def test_plain_python_does_not_install_ipython(pipeline_model):
    assert "ipython" not in _installs(pipeline_model, [(["step:a"], "print('100% sure')")])


@pytest.mark.skipif(installed_version("dill") is None, reason="dill is not installed here")
def test_dill_only_for_steps_that_pass_values(pipeline_model):
    model = pipeline_model([(["step:a"], "x = 1"), (["step:b"], "print(x)"), (["step:c"], "print(2)")])
    for step, expected in (("a", True), ("b", True), ("c", False)):
        packages = model["steps"][step]["component"]["packages"]
        assert (_pinned("dill") in packages) is expected, (step, packages)


def test_importing_kfp_installs_kfp_with_its_dependencies(pipeline_model):
    installs = _installs(pipeline_model, [(["step:a"], "from kfp import dsl\nprint(dsl)")])
    assert installs.get("kfp") == _pinned("kfp"), installs


def test_module_and_distribution_lookups_are_apart():
    # an import name: IPython's module is IPython; 'ipython' is no module
    assert module_requirement("IPython") == _pinned("ipython")
    assert module_requirement("ipython") is None
    # a distribution name: always a requirement, pinned where installed
    assert distribution_requirement("ipython") == _pinned("ipython")
    assert distribution_requirement("scikit-learn") == _pinned("scikit-learn")
    assert distribution_requirement("nbkfp-not-installed-anywhere") == "nbkfp-not-installed-anywhere"
    for bad in ("", "numpy; rm -rf /", "a b"):
        with pytest.raises(ValueError):
            distribution_requirement(bad)


# --- the local run as ground truth ----------------------------------------------------------------

def test_undeclared_imports_leave_out_dependencies_stdlib_and_the_notebooks_own_modules():
    imported = {"tabulate": "pandas.compat._optional", "numpy": "__main__", "json": "__main__",
                "nbkfp_own_module": "__main__", "pandas": "__main__"}
    found = undeclared("show", imported, ["pandas==1.0", "dill==0.4"])
    assert [(f.module, f.distribution, f.importer) for f in found] == [
        ("tabulate", "tabulate", "pandas.compat._optional")]
    assert found[0].line() == (f"step 'show' imported tabulate (distribution tabulate, through "
                               f"pandas.compat._optional), which its cluster installs lack: tag a cell of the step "
                               f"'package:tabulate=={installed_version('tabulate')}'")
    assert undeclared("show", imported, ["pandas", "Tabulate[widechars]>=0.9"]) == []



def test_an_ipython_extension_the_step_loads_is_installed(pipeline_model):
    installs = _installs(pipeline_model, [(["step:a"], "%load_ext line_profiler\ndef f():\n    return 1\n"
                                                       "%lprun -f f f()")])
    assert installs.get("line-profiler") == _pinned("line_profiler"), installs
    assert installs.get("ipython") == _pinned("ipython"), installs
