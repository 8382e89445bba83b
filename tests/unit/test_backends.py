"""Marshal backends: every library format round-trips exactly; a backend whose library is absent is skipped."""

from __future__ import annotations

import io
import math
import os
import pickle
import tempfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pandas.testing import assert_frame_equal, assert_series_equal

from nbconvert_kfp import marshal
from nbconvert_kfp.marshal import resource_load, resource_save
from nbconvert_kfp.runtime.step import Step
from backendcase import FakeArtifact, classification_data, need, roundtrip

# Keras 3 runs on PyTorch here (tensorflow-cpu, in the test extra, serves the SavedModel backend).
os.environ.setdefault("KERAS_BACKEND", "torch")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras")

HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])








# --- numpy -------------------------------------------------------------------------------------

NUMPY_DTYPES = st.one_of(
    hnp.integer_dtypes(endianness="="), hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?"), hnp.complex_number_dtypes(endianness="="),
    hnp.boolean_dtypes(), hnp.datetime64_dtypes(), hnp.timedelta64_dtypes(),
    hnp.byte_string_dtypes(max_len=4), hnp.unicode_string_dtypes(max_len=4),
)


def assert_same_array(loaded, array):
    assert type(loaded) is np.ndarray
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    assert loaded.tobytes(order="A") == array.tobytes(order="A")  # bit for bit: NaN payloads, -0.0


@HYPOTHESIS
@given(hnp.arrays(NUMPY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)))
def test_numpy_arrays_round_trip_bit_for_bit(array):
    loaded, fmt = roundtrip(array)
    assert fmt == "npy"
    assert_same_array(loaded, array)


@HYPOTHESIS
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)), st.booleans())
def test_memory_mapped_arrays_are_plain_writable_and_exact(array, fortran):
    array = np.asfortranarray(array) if fortran else array
    old = marshal.MMAP_MIN_BYTES
    marshal.MMAP_MIN_BYTES = 0
    try:
        loaded, fmt = roundtrip(array)
    finally:
        marshal.MMAP_MIN_BYTES = old
    assert fmt == "npy"
    assert_same_array(loaded, array)
    assert loaded.flags.f_contiguous == array.flags.f_contiguous
    assert loaded.flags.writeable and (is_mapped(loaded) or array.size == 0)


def test_large_arrays_load_copy_on_write_and_writes_never_reach_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(marshal, "MMAP_MIN_BYTES", 1024)
    array = np.arange(10_000, dtype=np.float64)
    written = resource_save(array, str(tmp_path / "a"))
    loaded = resource_load(str(tmp_path / "a"))
    assert type(loaded) is np.ndarray and not loaded.flags.owndata
    # not a numpy.memmap anywhere in its bases: joblib would hand workers the file, not the changes
    base = loaded
    while isinstance(base, np.ndarray):
        assert not isinstance(base, np.memmap)
        base = base.base
    assert type(base).__name__ == "mmap"
    loaded[0] = -1.0
    loaded += 1
    assert loaded[0] == 0.0 and loaded[1] == 2.0
    np.testing.assert_array_equal(np.load(written), array)  # the file is untouched
    assert pickle.loads(pickle.dumps(loaded))[1] == 2.0
    # saving the loaded array again (a later step changed it) writes the changed values
    resource_save(loaded, str(tmp_path / "b"))
    expected = array + 1
    expected[0] = 0.0
    np.testing.assert_array_equal(resource_load(str(tmp_path / "b")), expected)


def is_mapped(array):
    """Whether ``array``'s memory is a file mapping (mmap) rather than the step's own memory."""
    while isinstance(array, np.ndarray):
        array = array.base
    return type(array).__name__ == "mmap"


def test_small_arrays_are_read_into_memory(tmp_path):
    loaded, _ = roundtrip(np.arange(10.0))
    assert not is_mapped(loaded)


def test_memmap_mode_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setattr(marshal, "MMAP_MIN_BYTES", None)
    loaded, _ = roundtrip(np.arange(10_000_000, dtype=np.uint8))
    assert not is_mapped(loaded)


def test_a_numpy_memmap_is_saved_as_the_array_it_shows(tmp_path):
    mapped = np.lib.format.open_memmap(str(tmp_path / "m.npy"), mode="w+", dtype=np.int16, shape=(3, 4))
    mapped[:] = np.arange(12).reshape(3, 4)
    loaded, fmt = roundtrip(mapped)
    assert fmt == "npy" and type(loaded) is np.ndarray
    np.testing.assert_array_equal(loaded, np.arange(12).reshape(3, 4))


def test_npy_with_unicode_field_names_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(marshal, "MMAP_MIN_BYTES", 0)
    array = np.zeros(3, dtype=[("é", "f8"), ("b", "i4")])  # needs .npy format 3.0
    loaded, fmt = roundtrip(array)
    assert fmt == "npy" and loaded.dtype == array.dtype


# --- pandas ------------------------------------------------------------------------------------


def test_dataframe_hypothesis_round_trip():
    from hypothesis.extra.pandas import column, data_frames, range_indexes

    frames = data_frames(
        [column("i", dtype=np.int64), column("f", dtype=float), column("b", dtype=bool),
         column("s", elements=st.text(max_size=5)), column("t", dtype="datetime64[ns]"),
         column("u", dtype=np.uint8)],
        index=range_indexes(max_size=12))

    @HYPOTHESIS
    @given(frames)
    def check(frame):
        frame = frame.assign(c=pd.Categorical(frame["s"]), tz=frame["t"].dt.tz_localize("UTC"))
        loaded, fmt = roundtrip(frame)
        assert fmt == "pandas.pkl"
        assert_frame_equal(loaded, frame, check_exact=True)
        assert list(loaded.dtypes) == list(frame.dtypes)

    check()


def test_dataframe_keeps_attrs_flags_and_interval_period_index():
    frame = pd.DataFrame({"v": [1.5, 2.5, 3.5]}, index=pd.period_range("2024-01", periods=3, freq="M"))
    frame.attrs["source"] = "sensor"
    frame = frame.set_flags(allows_duplicate_labels=False)
    loaded, _ = roundtrip(frame)
    assert_frame_equal(loaded, frame, check_exact=True, check_flags=True)
    assert loaded.attrs == {"source": "sensor"}
    series = pd.Series([1, 2], index=pd.IntervalIndex.from_breaks([0, 1, 2]), dtype="Int8")
    loaded, _ = roundtrip(series)
    assert_series_equal(loaded, series, check_exact=True)


# --- plain Python values -------------------------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8),
                    st.binary(max_size=8), st.complex_numbers(allow_nan=False))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), inner, max_size=4),
    st.frozensets(st.one_of(st.integers(), st.text(max_size=3)), max_size=4)), max_leaves=12)


def same(a, b):
    """Equal with the same types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a == 0.0:
        return math.copysign(1, a) == math.copysign(1, b)
    return a == b


@HYPOTHESIS
@given(VALUES)
def test_plain_values_round_trip_as_pickle(value):
    loaded, fmt = roundtrip(value)
    assert fmt == "pkl"
    assert same(loaded, value)


# --- scipy.sparse ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "bsr", "dia", "lil", "dok"])
@pytest.mark.parametrize("kind", ["matrix", "array"])
def test_sparse_round_trips_with_format_kind_and_dtypes(fmt, kind):
    sparse = need("scipy.sparse")
    dense = np.random.default_rng(1).random((6, 8)) * (np.random.default_rng(2).random((6, 8)) > 0.6)
    factory = getattr(sparse, f"{fmt}_{kind}", None)
    if factory is None:
        pytest.skip(f"scipy has no {fmt}_{kind}")
    value = factory(dense.astype(np.float32))
    loaded, saved_as = roundtrip(value)
    assert saved_as == ("pkl" if fmt in ("lil", "dok") else "scipy.npz")
    assert type(loaded) is type(value) and loaded.format == value.format
    assert loaded.dtype == np.float32 and loaded.shape == value.shape
    np.testing.assert_array_equal(loaded.toarray(), value.toarray())


def test_sparse_keeps_64_bit_indices_that_load_npz_would_narrow():
    sparse = need("scipy.sparse")
    value = sparse.random(20, 30, density=0.2, format="csr", random_state=0)
    value.indices = value.indices.astype(np.int64)
    value.indptr = value.indptr.astype(np.int64)
    loaded, fmt = roundtrip(value)
    assert fmt == "scipy.npz"
    assert loaded.indices.dtype == np.int64 and loaded.indptr.dtype == np.int64
    assert (loaded != value).nnz == 0
    coo = sparse.coo_matrix((np.ones(3), ([0, 1, 2], [2, 1, 0])))
    coo.coords = (coo.coords[0].astype(np.int64), coo.coords[1].astype(np.int64))
    loaded, _ = roundtrip(coo)
    assert loaded.row.dtype == np.int64 and loaded.col.dtype == np.int64
    np.testing.assert_array_equal(loaded.toarray(), coo.toarray())


# --- scikit-learn ------------------------------------------------------------------------------


def _iris():
    datasets = need("sklearn.datasets")
    return datasets.load_iris(return_X_y=True, as_frame=True)


def test_fitted_sklearn_pipeline_predicts_exactly_after_a_round_trip():
    need("sklearn")
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = _iris()
    X = X.assign(kind=np.where(X.iloc[:, 0] > 5.8, "long", "short"))
    pipe = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), list(X.columns[:4])), ("cat", OneHotEncoder(), ["kind"])]),
        RandomForestClassifier(n_estimators=10, random_state=0)).fit(X, y)
    loaded, fmt = roundtrip(pipe)
    assert fmt == "joblib"
    assert type(loaded) is type(pipe)
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
    assert loaded.get_params(deep=False).keys() == pipe.get_params(deep=False).keys()


def test_sklearn_pipeline_holding_a_lambda_falls_back_to_dill():
    need("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = _iris()
    pipe = make_pipeline(FunctionTransformer(lambda v: v * 2.0), LogisticRegression(max_iter=500)).fit(X, y)
    loaded, fmt = roundtrip(pipe)
    # joblib pickles with Python's pure-Python pickler, which dill extends once dill is imported:
    # then joblib itself writes the lambda (by value, through dill); before that, the dill fallback does
    assert fmt in ("dill", "joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))


def test_unfitted_estimator_round_trips_with_params():
    need("sklearn")
    from sklearn.svm import SVC

    loaded, fmt = roundtrip(SVC(C=3.5, kernel="poly"))
    assert fmt == "joblib" and loaded.get_params() == SVC(C=3.5, kernel="poly").get_params()


# --- xgboost -----------------------------------------------------------------------------------




def test_xgboost_booster_round_trips_predictions_exactly():
    xgb = need("xgboost")
    X, y = classification_data()
    train = xgb.DMatrix(X, label=y, feature_names=list("abcde"))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3}, train, 12)
    booster.set_attr(note="from the notebook")
    loaded, fmt = roundtrip(booster)
    assert fmt == "xgboost.ubj" and type(loaded) is xgb.Booster
    test = xgb.DMatrix(X[:50] + 0.01, feature_names=list("abcde"))
    assert loaded.predict(test).tobytes() == booster.predict(test).tobytes()
    assert loaded.predict(test, output_margin=True).tobytes() == booster.predict(test, output_margin=True).tobytes()
    assert loaded.attributes() == booster.attributes()
    assert loaded.feature_names == booster.feature_names
    assert loaded.num_boosted_rounds() == booster.num_boosted_rounds()
    assert loaded.get_dump() == booster.get_dump()


def test_xgboost_sklearn_model_uses_joblib_through_its_sklearn_base():
    xgb = need("xgboost")
    need("sklearn")
    X, y = classification_data()
    model = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(X, y)
    loaded, fmt = roundtrip(model)
    assert fmt == "joblib" and type(loaded) is xgb.XGBClassifier
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_xgboost_dmatrix_round_trips_data_and_meta_information():
    xgb = need("xgboost")
    X, y = classification_data(100)
    X[3, 2] = np.nan
    matrix = xgb.DMatrix(X, label=y, weight=np.linspace(0.5, 1.5, 100), base_margin=np.full(100, 0.25),
                         feature_names=list("vwxyz"), feature_types=["float", "float", "float", "int", "float"])
    loaded, fmt = roundtrip(matrix)
    assert fmt == "xgboost.dmatrix" and type(loaded) is xgb.DMatrix
    assert (loaded.num_row(), loaded.num_col()) == (100, 5)
    assert loaded.num_nonmissing() == matrix.num_nonmissing() == 499
    for getter in ("get_label", "get_weight", "get_base_margin"):
        np.testing.assert_array_equal(getattr(loaded, getter)(), getattr(matrix, getter)())
    assert loaded.feature_names == matrix.feature_names and loaded.feature_types == matrix.feature_types
    assert (loaded.get_data() != matrix.get_data()).nnz == 0
    booster = xgb.train({"objective": "binary:logistic"}, matrix, 5)
    assert booster.predict(loaded).tobytes() == booster.predict(matrix).tobytes()


def test_quantile_dmatrix_cannot_be_saved_and_says_what_to_do():
    xgb = need("xgboost")
    X, y = classification_data(50)
    with pytest.raises(marshal.MarshalError, match=r"QuantileDMatrix cannot be saved.*build it in the step"):
        roundtrip(xgb.QuantileDMatrix(X, label=y))


# --- lightgbm ----------------------------------------------------------------------------------


def test_lightgbm_booster_round_trips_with_best_iteration_and_params():
    lgb = need("lightgbm")
    X, y = classification_data(600)
    train = lgb.Dataset(X[:400], y[:400])
    valid = lgb.Dataset(X[400:], y[400:], reference=train)
    booster = lgb.train({"objective": "binary", "verbose": -1, "learning_rate": 0.5, "num_leaves": 63},
                        train, 200, valid_sets=[valid], callbacks=[lgb.early_stopping(2, verbose=False)],
                        keep_training_booster=True)
    assert 0 < booster.best_iteration < booster.current_iteration()  # early stopping kept the best
    loaded, fmt = roundtrip(booster)
    assert fmt == "lightgbm.json" and type(loaded) is lgb.Booster
    assert loaded.best_iteration == booster.best_iteration
    assert loaded.current_iteration() == booster.current_iteration()
    assert loaded.params == booster.params
    assert dict(loaded.best_score) == dict(booster.best_score)
    assert loaded.predict(X).tobytes() == booster.predict(X).tobytes()
    assert loaded.predict(X, num_iteration=-1).tobytes() == booster.predict(X, num_iteration=-1).tobytes()
    assert loaded.feature_name() == booster.feature_name()


def test_lightgbm_sklearn_model_uses_joblib():
    lgb = need("lightgbm")
    X, y = classification_data()
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)
    loaded, fmt = roundtrip(model)
    assert fmt == "joblib"
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


# --- torch -------------------------------------------------------------------------------------






# --- Keras -------------------------------------------------------------------------------------



# --- PIL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"])
def test_pil_images_in_lossless_modes_round_trip_as_png(mode):
    Image = need("PIL.Image")
    image = Image.new(mode, (9, 7))
    raw = np.random.default_rng(3).integers(0, 256, size=len(image.tobytes()), dtype=np.uint8)
    image.frombytes(raw.tobytes())
    if mode == "P":
        image.putpalette(list(np.random.default_rng(4).integers(0, 256, 768)))
        image.info["transparency"] = 5
    image.info.update({"dpi": (72, 72), "comment": b"made in a notebook"})
    loaded, fmt = roundtrip(image)
    assert fmt == "pil.png"
    assert (loaded.mode, loaded.size) == (image.mode, image.size)
    assert loaded.tobytes() == image.tobytes()
    assert loaded.info == image.info
    assert loaded.getpalette() == image.getpalette()
    assert loaded.format is None


@pytest.mark.parametrize("mode", ["F", "I", "CMYK", "YCbCr", "HSV", "PA"])
def test_pil_images_in_other_modes_round_trip_as_pickle(mode):
    Image = need("PIL.Image")
    image = Image.new(mode, (4, 3))
    raw = np.random.default_rng(5).integers(0, 256, size=len(image.tobytes()), dtype=np.uint8)
    image.frombytes(raw.tobytes())
    loaded, fmt = roundtrip(image)
    assert fmt == "pkl"
    assert (loaded.mode, loaded.size, loaded.tobytes()) == (image.mode, image.size, image.tobytes())


def test_pil_image_opened_from_a_jpeg_keeps_its_format_and_info():
    Image = need("PIL.Image")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="JPEG", dpi=(300, 300))
    buffer.seek(0)
    image = Image.open(buffer)
    image.load()
    loaded, fmt = roundtrip(image)
    assert fmt == "pil.png"
    assert loaded.format == "JPEG" and loaded.info == image.info and loaded.tobytes() == image.tobytes()


# --- dill --------------------------------------------------------------------------------------


def test_lambda_closure_and_local_class_round_trip_with_dill():
    offset = 10

    class Local:
        def __init__(self, v):
            self.v = v

        def plus(self):
            return self.v + offset

    value = {"f": lambda v: v * offset, "obj": Local(5)}
    loaded, fmt = roundtrip(value)
    assert fmt == "dill"
    assert loaded["f"](2) == 20 and loaded["obj"].plus() == 15


def test_notebook_lambda_using_a_module_travels_between_steps(tmp_path):
    out = FakeArtifact(tmp_path / "f")
    with Step("define") as step:
        step.run([(0, "\nimport math\nK = 3\nscale = lambda v: math.floor(v * K)\n")])
        step.save({"scale": out})
    assert out.metadata["format"] == "dill"
    with Step("use") as step:
        step.load({"scale": out})
        step.run([(1, "\nresult = scale(2.5)\n")])
        assert step.namespace["result"] == 7


# --- format check on load ------------------------------------------------------------------------


def test_step_load_checks_the_recorded_format(tmp_path):
    out = FakeArtifact(tmp_path / "x")
    with Step("make") as step:
        step.run([(0, "\nimport numpy as np\nx = np.arange(3)\n")])
        step.save({"x": out})
    assert out.metadata["format"] == "npy"
    out.metadata["format"] = "pandas.pkl"
    with pytest.raises(marshal.MarshalError) as info:
        Step("use").load({"x": out})
    message = str(info.value)
    assert "step 'use' cannot load variable 'x'" in message
    assert "holds format 'npy'" in message and "records format 'pandas.pkl'" in message


def test_step_load_names_a_missing_library(tmp_path, monkeypatch):
    out = FakeArtifact(tmp_path / "x")
    with Step("make") as step:
        step.namespace["x"] = np.arange(3)
        step.save({"x": out})

    def no_numpy(path):
        raise ModuleNotFoundError("No module named 'numpy'", name="numpy")

    monkeypatch.setattr(marshal.resource_load, "dispatch", lambda filename: no_numpy)
    with pytest.raises(marshal.MarshalError, match=r"cannot load variable 'x' \(numpy.ndarray, format 'npy'\).*"
                                                   r"Install 'numpy' in the step image"):
        Step("use").load({"x": out})


def test_step_load_of_a_notebook_class_that_the_step_lacks_says_where_to_define_it(tmp_path):
    out = FakeArtifact(tmp_path / "p")
    with Step("make") as step:
        step.run([(0, "\nclass Point:\n    pass\n\np = Point()\n")])
        step.save({"p": out})
    with pytest.raises(marshal.MarshalError, match=r"cannot load variable 'p'.*define it in a `functions` cell"):
        Step("use").load({"p": out})


# --- pandas: long string columns are written in chunks ------------------------------------------------


def test_long_string_columns_are_chunked_and_round_trip_exactly(monkeypatch):
    monkeypatch.setattr(marshal, "FRAME_CHUNK", 100)
    rows = 1050
    index = pd.Index([f"r{i}" for i in range(rows)], dtype=object, name="row")
    frame = pd.DataFrame({
        "label": pd.array([None if i % 17 == 0 else f"s{i % 40}" for i in range(rows)], dtype="string"),
        # dtype=object explicitly: pandas 3 would infer its str dtype for strings
        "obj": pd.Series([f"o{i}" if i % 5 else None for i in range(rows)], dtype=object, index=index),
        "obj2": pd.Series([f"p{i}" for i in range(rows)], dtype=object, index=index),
        "mixed": pd.Series([[i] if i % 2 else "t" for i in range(rows)], dtype=object, index=index),
        "x": np.arange(rows, dtype=np.float64),
    }, index=index)
    loaded, fmt = roundtrip(frame)
    assert fmt == "pandas.chunked.pkl"
    assert_frame_equal(loaded, frame, check_exact=True)
    assert list(loaded.dtypes) == list(frame.dtypes) and loaded.index.dtype == object
    # a string repeated within a chunk is stored, and loaded, once
    labels = loaded["obj2"].to_numpy()
    assert all(isinstance(v, str) for v in labels)
    series = pd.Series(["same"] * 500, dtype=object)
    loaded, fmt = roundtrip(series)
    assert fmt == "pandas.chunked.pkl"
    assert_series_equal(loaded, series)
    values = loaded.to_numpy()
    assert values[0] is values[99]


def test_arrow_string_columns_are_written_as_arrow_streams_and_round_trip_exactly(monkeypatch):
    """pandas 3's str dtype is Arrow-backed when pyarrow is installed: pickling would copy the column whole."""
    need("pyarrow")
    monkeypatch.setattr(marshal, "ARROW_MIN_BYTES", 1000)
    monkeypatch.setattr(marshal, "FRAME_CHUNK", 100)
    rows = 1050
    frame = pd.DataFrame({
        "label": pd.array([None if i % 17 == 0 else f"s{i % 40}" for i in range(rows)], dtype="string[pyarrow]"),
        "big": pd.Series([f"value-{i}" for i in range(rows)], dtype=pd.StringDtype("pyarrow", na_value=np.nan)),
        "x": np.arange(rows, dtype=np.float64),
    })
    loaded, fmt = roundtrip(frame)
    assert fmt == "pandas.chunked.pkl"
    assert_frame_equal(loaded, frame, check_exact=True)
    assert list(loaded.dtypes) == list(frame.dtypes)


def test_short_frames_stay_plain_pickles_that_pandas_reads():
    frame = pd.DataFrame({"s": ["a", "b"], "o": pd.Series(["x", None], dtype=object)})
    with tempfile.TemporaryDirectory() as tmp:
        written = resource_save(frame, os.path.join(tmp, "a"))
        assert written.endswith("value.pandas.pkl")
        assert_frame_equal(pd.read_pickle(written), frame)


def test_a_chunked_file_without_its_trailer_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(marshal, "FRAME_CHUNK", 10)
    written = resource_save(pd.Series([f"v{i}" for i in range(50)], dtype=object), str(tmp_path / "a"))
    with open(written, "r+b") as fh:
        fh.truncate(os.path.getsize(written) - 3)
    with pytest.raises(marshal.MarshalError, match="not a chunked pandas pickle"):
        resource_load(str(tmp_path / "a"))
