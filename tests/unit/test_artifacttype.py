"""Artifact types guessed from a step's source at conversion time, and values that can never be saved."""

from __future__ import annotations

import textwrap

import pytest

from nbconvert_kfp.analysis.artifacttype import (
    ARTIFACT, DATASET, MODEL, imports_of, infer_artifact_types, unsaveable_values,
)

PRELUDE = {
    "np": "numpy", "pd": "pandas", "sp": "scipy.sparse", "torch": "torch", "nn": "torch.nn",
    "xgb": "xgboost", "lgb": "lightgbm", "keras": "keras", "tf": "tensorflow", "Image": "PIL.Image",
    "train_test_split": "sklearn.model_selection.train_test_split",
    "load_iris": "sklearn.datasets.load_iris",
    "RandomForestClassifier": "sklearn.ensemble.RandomForestClassifier",
    "LogisticRegression": "sklearn.linear_model.LogisticRegression",
    "StandardScaler": "sklearn.preprocessing.StandardScaler",
    "make_pipeline": "sklearn.pipeline.make_pipeline",
    "GridSearchCV": "sklearn.model_selection.GridSearchCV",
    "KFold": "sklearn.model_selection.KFold",
    "accuracy_score": "sklearn.metrics.accuracy_score",
    "SparkSession": "pyspark.sql.SparkSession",
}


def infer(source, imports=PRELUDE, **kwargs):
    return infer_artifact_types(textwrap.dedent(source), imports, **kwargs)


def unsaveable(source, imports=PRELUDE):
    return unsaveable_values(textwrap.dedent(source), imports)


@pytest.mark.parametrize("expression", [
    "pd.read_csv('data.csv')", "pd.read_parquet('x')", "pd.DataFrame({'a': [1]})", "pd.Series([1, 2])",
    "pd.concat([a, b])", "np.array([1, 2])", "np.zeros((3, 3))", "np.random.rand(3)", "np.load('x.npy')",
    "sp.csr_matrix(m)", "sp.random(3, 3)", "torch.tensor([1.0])", "torch.randn(3)", "torch.from_numpy(a)",
    "xgb.DMatrix(X, label=y)", "lgb.Dataset(X, y)", "Image.open('a.png')", "load_iris()",
    "load_iris(as_frame=True).frame", "np.random.default_rng(0).normal(size=4)",
])
def test_data_expressions_are_datasets(expression):
    assert infer(f"value = {expression}\n") == {"value": DATASET}


@pytest.mark.parametrize("expression", [
    "RandomForestClassifier(n_estimators=10)", "LogisticRegression()", "StandardScaler()",
    "make_pipeline(StandardScaler(), LogisticRegression())", "GridSearchCV(LogisticRegression(), {})",
    "xgb.train(params, dtrain, 10)", "xgb.XGBClassifier()", "xgb.Booster()", "lgb.train({}, ds)",
    "lgb.LGBMRegressor()", "torch.nn.Linear(3, 1)", "nn.Sequential(nn.Linear(3, 1))",
    "keras.Sequential([keras.layers.Dense(1)])", "keras.Model(inputs, outputs)", "tf.keras.Sequential()",
    "keras.models.load_model('m.keras')", "RandomForestClassifier().fit(X, y)",
])
def test_model_expressions_are_models(expression):
    assert infer(f"value = {expression}\n") == {"value": MODEL}


@pytest.mark.parametrize("expression", [
    "[1, 2, 3]", "{'a': 1}", "lambda v: v * 2", "len(df)", "accuracy_score(y, pred)", "KFold(5)",
    "'text'", "42", "some_function()", "np.random.default_rng(0)", "json.load(fh)", "torch.device('cpu')",
])
def test_other_expressions_are_artifacts(expression):
    assert infer(f"value = {expression}\n") == {"value": ARTIFACT}


def test_tuple_targets_of_data_functions_are_datasets():
    types = infer("""
        X, y = load_iris(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2)
        a, b = np.zeros(3), RandomForestClassifier()
        first, *rest = things()
    """)
    assert types == {"X": DATASET, "y": DATASET, "X_train": DATASET, "X_test": DATASET, "y_train": DATASET,
                     "y_test": DATASET, "a": DATASET, "b": MODEL, "first": ARTIFACT, "rest": ARTIFACT}


def test_fitting_keeps_a_model_and_predictions_are_data():
    types = infer("""
        model = RandomForestClassifier()
        model.fit(X_train, y_train)
        fitted = LogisticRegression().fit(X, y)
        pred = model.predict(X_test)
        proba = fitted.predict_proba(X_test)
        score = model.score(X_test, y_test)
        importances = model.feature_importances_
        search = GridSearchCV(model, grid).fit(X, y)
        best = search.best_estimator_
    """)
    assert types == {"model": MODEL, "fitted": MODEL, "pred": DATASET, "proba": DATASET, "score": ARTIFACT,
                     "importances": DATASET, "search": MODEL, "best": MODEL}


def test_an_unknown_object_that_is_fitted_is_a_model():
    assert infer("est = build_estimator()\nest.fit(X, y)\n") == {"est": MODEL}
    assert infer("est = build_estimator()\nest.fit()\n") == {"est": ARTIFACT}


def test_data_derived_from_data_is_data():
    types = infer("""
        df = pd.read_csv('x.csv')
        clean = df.dropna().reset_index(drop=True)
        column = df['a']
        mask = df['a'] > 3
        doubled = df * 2
        values = df.values
        rows = df.shape
        listed = df['a'].tolist()
    """)
    assert types == {"df": DATASET, "clean": DATASET, "column": DATASET, "mask": DATASET, "doubled": DATASET,
                     "values": DATASET, "rows": ARTIFACT, "listed": ARTIFACT}


def test_inputs_from_upstream_steps_give_derived_values_their_kind():
    assert infer("clean = df.dropna()\n") == {"clean": ARTIFACT}
    assert infer("clean = df.dropna()\n", inputs={"df": DATASET}) == {"clean": DATASET}
    assert infer("pred = model.predict(X)\n", inputs={"model": MODEL}) == {"pred": DATASET}


def test_the_last_binding_decides():
    assert infer("x = np.zeros(3)\nx = x.tolist()\n") == {"x": ARTIFACT}
    assert infer("x = [1]\nx = np.array(x)\n") == {"x": DATASET}
    assert infer("x = np.zeros(3)\ndel x\n") == {}


def test_classes_defined_in_the_step_that_derive_from_models_are_models():
    types = infer("""
        class Net(nn.Module):
            def forward(self, x):
                return x

        class Deeper(Net):
            pass

        class Custom:
            def fit(self, X, y):
                return self

            def predict(self, X):
                return X

        class Plain:
            pass

        net = Net()
        deeper = Deeper()
        custom = Custom()
        plain = Plain()
        out = net(torch.ones(3))
    """)
    assert types == {"net": MODEL, "deeper": MODEL, "custom": MODEL, "plain": ARTIFACT, "out": DATASET}


def test_imports_in_the_source_are_resolved_and_not_reported():
    source = """
        import pandas as pandas_alias
        from sklearn.ensemble import GradientBoostingClassifier as GBC
        import xgboost
        frame = pandas_alias.DataFrame()
        model = GBC()
        booster = xgboost.train({}, d)
    """
    assert infer(source, imports={}) == {"frame": DATASET, "model": MODEL, "booster": MODEL}


def test_unresolved_names_are_artifacts_without_imports():
    assert infer("df = read_csv('x')\n", imports={}) == {"df": ARTIFACT}


def test_bindings_in_blocks_count_and_function_bodies_do_not():
    types = infer("""
        if flag:
            a = np.zeros(3)
        else:
            a = np.ones(3)
        for i in range(3):
            b = RandomForestClassifier()
        try:
            c = pd.read_csv('x')
        except OSError:
            c = pd.DataFrame()

        def helper():
            inner = np.zeros(3)
            return inner

        if (n := len(a)) > 2:
            pass
    """)
    assert types == {"a": DATASET, "i": ARTIFACT, "b": MODEL, "c": DATASET, "n": ARTIFACT}


def test_syntax_errors_give_nothing():
    assert infer_artifact_types("x = (", {}) == {}
    assert unsaveable_values("x = (", {}) == {}


def test_imports_of_builds_the_imports_mapping():
    assert imports_of(textwrap.dedent("""
        import numpy as np
        import os.path
        from sklearn.ensemble import RandomForestClassifier
        from torch import nn as neural
        from . import local
        from x import *
        if True:
            import pandas as pd
    """)) == {"np": "numpy", "os": "os", "RandomForestClassifier": "sklearn.ensemble.RandomForestClassifier",
              "neural": "torch.nn", "pd": "pandas"}
    assert imports_of("import (") == {}


# --- values that cannot be saved ------------------------------------------------------------------


def test_with_open_handle_is_unsaveable_but_what_was_read_is_not():
    found = unsaveable("""
        with open('data.txt') as fh:
            text = fh.read()
        with open('a') as a, open('b') as b:
            pass
    """)
    assert set(found) == {"fh", "a", "b"}
    assert "`with` block" in found["fh"] and "closed" in found["fh"]


@pytest.mark.parametrize("expression, words", [
    ("(line for line in lines)", "generator expression"),
    ("open('x.txt')", "open file"),
    ("gzip.open('x.gz')", "open file"),
    ("Path('x').open()", "open file"),
    ("socket.socket()", "network connection"),
    ("threading.Lock()", "lock"),
    ("multiprocessing.Pool(2)", "worker pool"),
    ("sqlite3.connect(':memory:')", "database connection"),
    ("sqlite3.connect(':memory:').cursor()", "database connection"),
    ("psycopg2.connect(dsn)", "database connection"),
    ("SparkSession.builder.appName('x').getOrCreate()", "Spark"),
    ("xgb.QuantileDMatrix(X)", "QuantileDMatrix"),
])
def test_unsaveable_expressions_are_reported_with_a_reason(expression, words):
    imports = {**PRELUDE, "gzip": "gzip", "Path": "pathlib.Path", "socket": "socket", "threading": "threading",
               "multiprocessing": "multiprocessing", "sqlite3": "sqlite3", "psycopg2": "psycopg2"}
    found = unsaveable_values(f"value = {expression}\n", imports)
    assert list(found) == ["value"]
    assert words in found["value"]


def test_spark_values_stay_unsaveable_until_collected():
    found = unsaveable("""
        spark = SparkSession.builder.getOrCreate()
        sdf = spark.read.csv('x.csv')
        joined = sdf.join(sdf, 'id').filter('a > 1')
        local = joined.toPandas()
        rows = joined.collect()
        total = joined.count()
    """)
    assert set(found) == {"spark", "sdf", "joined"}
    assert infer("local = SparkSession.builder.getOrCreate().read.csv('x').toPandas()\n") == {"local": DATASET}


def test_generator_functions_defined_in_the_step_make_unsaveable_values():
    found = unsaveable("""
        def batches(n):
            for i in range(n):
                yield i

        def plain(n):
            def inner():
                yield n
            return list(range(n))

        stream = batches(3)
        items = plain(3)
        collected = list(batches(3))
    """)
    assert list(found) == ["stream"]
    assert "batches()" in found["stream"]


def test_database_results_that_were_fetched_are_saveable():
    found = unsaveable_values(textwrap.dedent("""
        conn = sqlite3.connect('db')
        rows = conn.execute('select 1').fetchall()
        frame = pd.read_sql('select 1', conn)
    """), {**PRELUDE, "sqlite3": "sqlite3"})
    assert list(found) == ["conn"]


def test_a_rebound_variable_is_judged_by_its_last_value():
    assert unsaveable("fh = open('x')\nfh = fh.read()\n") == {}
    assert unsaveable("data = [1]\ndata = (x for x in data)\n") == {
        "data": "a generator expression keeps its position in the step that runs it"}


# --- wired into the conversion: the compiled IR types each output, and the conversion warns --------


def test_conversion_warns_when_a_step_reads_a_value_that_cannot_travel(caplog):
    from helpers import build_notebook
    from nbconvert_kfp.exporters import KFPExporter

    nb = build_notebook([
        (["step:a"], "fh = open('data.txt', 'w')\nrows = (i for i in range(3))\ncount = 3"),
        (["step:b", "prev:a"], "fh.write('x')\nprint(list(rows), count)"),
    ])
    exporter = KFPExporter()
    with caplog.at_level("WARNING"):
        exporter.log.propagate = True
        exporter.from_notebook_node(nb)
    messages = [r.getMessage() for r in caplog.records]
    [handle] = [m for m in messages if "'fh'" in m]
    assert handle.startswith("cell 2: step 'b' reads 'fh' from step 'a', which cannot pass it on (")
    assert "open file" in handle and "'functions' cell" in handle
    assert any("'rows'" in m and "generator" in m for m in messages)
    assert not any("'count'" in m for m in messages)
