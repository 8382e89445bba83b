"""Marshal: saving notebook values to artifact directories and loading them back, by type."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from nbconvert_kfp import marshal
from nbconvert_kfp.marshal import MarshalError, NameDispatch, TypeDispatch, resource_load, resource_save


class Point:
    """A module-level class: its instances pickle by reference."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class Unpicklable:
    """Pickling raises an error that is neither a PicklingError nor a TypeError/AttributeError."""

    def __reduce__(self):
        raise RuntimeError("refuses to be pickled")


def roundtrip(obj, tmp_path, name="artifact"):
    """Save ``obj`` into a fresh artifact directory, load it back; return (loaded, file name)."""
    path = str(tmp_path / name)
    written = resource_save(obj, path)
    assert os.path.dirname(written) == path
    assert os.listdir(path) == [os.path.basename(written)]
    return resource_load(path), os.path.basename(written)


def make_closure(n):
    def add(x):
        return x + n

    return add


# --- numpy ---------------------------------------------------------------------------


@pytest.mark.parametrize("array", [
    np.linspace(0.0, 1.0, 7).reshape(7, 1),
    np.arange(12, dtype=np.int32).reshape(3, 4),
    np.array([True, False, True]),
    np.array([[1.5 + 2j, -1j]]),
    np.array([(1, 2.5, b"ab"), (3, -1.0, b"cd")], dtype=[("a", "i4"), ("b", "f8"), ("c", "S2")]),
    np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
], ids=["float", "int32", "bool", "complex", "structured", "fortran"])
def test_numpy_arrays_round_trip_as_npy(array, tmp_path):
    loaded, name = roundtrip(array, tmp_path)
    assert name == "value.npy"
    assert type(loaded) is np.ndarray
    assert loaded.dtype == array.dtype
    assert loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)


def test_object_array_falls_back_to_pickle(tmp_path):
    array = np.array([{"a": 1}, None, "text", [1, 2]], dtype=object)
    loaded, name = roundtrip(array, tmp_path)
    assert name == "value.pkl"
    assert loaded.dtype == object
    assert list(loaded) == list(array)


def test_ndarray_subclass_falls_back_to_pickle(tmp_path):
    masked = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])
    loaded, name = roundtrip(masked, tmp_path)
    assert name == "value.pkl"
    assert isinstance(loaded, np.ma.MaskedArray)
    np.testing.assert_array_equal(loaded.mask, masked.mask)
    np.testing.assert_array_equal(loaded.data, masked.data)


def test_numpy_scalar_round_trips(tmp_path):
    loaded, name = roundtrip(np.float64(0.25), tmp_path)
    assert name == "value.pkl"
    assert loaded == 0.25 and type(loaded) is np.float64


# --- pandas --------------------------------------------------------------------------


def test_dataframe_round_trips_with_dtypes_and_index(tmp_path):
    frame = pd.DataFrame(
        {
            "ints": np.array([1, 2, 3], dtype=np.int16),
            "floats": [0.5, np.nan, 2.25],
            "cat": pd.Categorical(["b", "a", "b"], categories=["b", "a", "c"], ordered=True),
            "when": pd.date_range("2024-03-30 23:00", periods=3, freq="h", tz="Europe/Paris"),
            "naive": pd.to_datetime(["2020-01-01", "2021-06-15", None]),
            "text": ["x", None, "z"],
            "flag": pd.array([True, None, False], dtype="boolean"),
            "nullable": pd.array([1, None, 3], dtype="Int64"),
        },
        index=pd.Index(["r1", "r2", "r3"], name="row"),
    )
    loaded, name = roundtrip(frame, tmp_path)
    assert name == "value.pandas.pkl"
    assert_frame_equal(loaded, frame, check_exact=True)
    assert str(loaded["when"].dtype) == "datetime64[ns, Europe/Paris]" or str(loaded["when"].dtype).endswith(
        ", Europe/Paris]")
    assert list(loaded["cat"].cat.categories) == ["b", "a", "c"] and loaded["cat"].cat.ordered


def test_dataframe_with_multiindex_round_trips(tmp_path):
    index = pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["letter", "number"])
    frame = pd.DataFrame({"v": [1.0, 2.0, 3.0, 4.0]}, index=index)
    loaded, name = roundtrip(frame, tmp_path)
    assert name == "value.pandas.pkl"
    assert_frame_equal(loaded, frame)


def test_series_round_trips(tmp_path):
    series = pd.Series(pd.Categorical(["lo", "hi", "lo"]), index=pd.Index([10, 20, 30], name="k"), name="level")
    loaded, name = roundtrip(series, tmp_path)
    assert name == "value.pandas.pkl"
    assert_series_equal(loaded, series)


def test_dataframe_subclass_uses_the_pandas_saver(tmp_path):
    class Frame(pd.DataFrame):
        pass

    # a subclass defined in a function cannot be pickled by reference, so only the
    # MRO-based choice of saver is checked here
    assert marshal.resource_save.dispatch(Frame) is marshal.resource_save.dispatch(pd.DataFrame)


# --- plain Python values ---------------------------------------------------------------


@pytest.mark.parametrize("value", [
    {"a": [1, 2, (3, 4)], "b": {"nested": {1, 2}}, 3: None},
    [1, "two", 3.0, b"four", None, True],
    (1, (2, (3,))),
    frozenset({"x", "y"}),
    "héllo ✓",
    12345678901234567890,
    None,
], ids=["dict", "list", "tuple", "frozenset", "str", "bigint", "none"])
def test_plain_containers_round_trip_as_pickle(value, tmp_path):
    loaded, name = roundtrip(value, tmp_path)
    assert name == "value.pkl"
    assert loaded == value
    assert type(loaded) is type(value)


def test_class_instance_round_trips_as_pickle(tmp_path):
    loaded, name = roundtrip(Point(1, [2, 3]), tmp_path)
    assert name == "value.pkl"
    assert loaded == Point(1, [2, 3])


def test_lambda_round_trips_with_dill(tmp_path):
    scale = 3
    func = lambda v: v * scale  # noqa: E731
    loaded, name = roundtrip(func, tmp_path)
    assert name == "value.dill"
    assert loaded(5) == 15


def test_closure_round_trips_with_dill(tmp_path):
    loaded, name = roundtrip(make_closure(10), tmp_path)
    assert name == "value.dill"
    assert loaded(5) == 15


def test_format_of_names_the_format():
    assert marshal.format_of("/a/b.c/value.npy") == "npy"
    assert marshal.format_of("/a/value.pandas.pkl") == "pandas.pkl"
    assert marshal.format_of("value.dill") == "dill"


# --- atomic writes ---------------------------------------------------------------------


def test_save_leaves_only_the_value_file(tmp_path):
    path = tmp_path / "artifact"
    resource_save({"a": 1}, str(path))
    assert sorted(os.listdir(path)) == ["value.pkl"]
    assert not any(marshal._PARTIAL in name for name in os.listdir(path))


def test_saving_again_replaces_the_previous_value_and_format(tmp_path):
    path = str(tmp_path / "artifact")
    resource_save(np.arange(3), path)
    assert os.listdir(path) == ["value.npy"]
    resource_save({"now": "a dict"}, path)
    assert os.listdir(path) == ["value.pkl"]
    assert resource_load(path) == {"now": "a dict"}


def test_failed_save_leaves_no_value_file(tmp_path):
    path = tmp_path / "artifact"
    with pytest.raises(RuntimeError, match="refuses"):
        resource_save({"bad": Unpicklable()}, str(path))
    assert os.listdir(path) == []


def test_failed_save_over_an_old_value_leaves_no_value_file(tmp_path):
    path = tmp_path / "artifact"
    resource_save([1, 2], str(path))
    with pytest.raises(RuntimeError):
        resource_save(Unpicklable(), str(path))
    assert os.listdir(path) == []
    with pytest.raises(MarshalError):
        resource_load(str(path))


def test_value_that_neither_pickle_nor_dill_can_save_leaves_no_file(tmp_path):
    path = tmp_path / "artifact"
    generator = (i for i in range(3))
    with pytest.raises(Exception):
        resource_save(generator, str(path))
    assert os.listdir(path) == []


# --- missing values ----------------------------------------------------------------------


def test_loading_an_empty_artifact_raises_marshal_error(tmp_path):
    (tmp_path / "artifact").mkdir()
    with pytest.raises(MarshalError, match="no saved value"):
        resource_load(str(tmp_path / "artifact"))


def test_loading_ignores_partial_leftovers_and_other_files(tmp_path):
    path = tmp_path / "artifact"
    (path / (marshal._PARTIAL + "abc")).mkdir(parents=True)
    (path / "notes.txt").write_text("not a value")
    with pytest.raises(MarshalError):
        resource_load(str(path))


def test_loading_a_missing_artifact_directory_raises_marshal_error(tmp_path):
    with pytest.raises(MarshalError):
        resource_load(str(tmp_path / "never_written"))


def test_resource_load_accepts_the_value_file_path(tmp_path):
    written = resource_save({"k": "v"}, str(tmp_path / "artifact"))
    assert resource_load(written) == {"k": "v"}


# --- TypeDispatch ------------------------------------------------------------------------


class Base:
    pass


class Child(Base):
    pass


class GrandChild(Child):
    pass


def qualified(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def test_register_by_type():
    dispatch = TypeDispatch("save")

    @dispatch.register(Base)
    def save_base(obj, stem):
        return ("base", stem)

    assert dispatch(Base(), "s") == ("base", "s")
    assert dispatch.dispatch(Base) is save_base


def test_register_a_tuple_of_types():
    dispatch = TypeDispatch("save")
    func = dispatch.register((int, str), lambda obj, stem: type(obj).__name__)
    assert dispatch(3, "s") == "int"
    assert dispatch("x", "s") == "str"
    assert dispatch.dispatch(int) is func


def test_subclass_uses_its_parents_function():
    dispatch = TypeDispatch("save")
    dispatch.register(Base, lambda obj, stem: "base")
    assert dispatch(GrandChild(), "s") == "base"
    dispatch.register(Child, lambda obj, stem: "child")
    assert dispatch(GrandChild(), "s") == "child"
    assert dispatch(Base(), "s") == "base"


def test_register_by_regex_on_qualified_name():
    dispatch = TypeDispatch("save")
    dispatch.register(re.escape(qualified(Child)), lambda obj, stem: "child-pattern")
    assert dispatch(Child(), "s") == "child-pattern"
    # MRO: the pattern matches the parent's qualified name
    assert dispatch(GrandChild(), "s") == "child-pattern"
    with pytest.raises(MarshalError, match="no save function"):
        dispatch(Base(), "s")


def test_regex_must_match_the_whole_qualified_name():
    dispatch = TypeDispatch("save")
    dispatch.register(r"Child", lambda obj, stem: "partial")
    with pytest.raises(MarshalError):
        dispatch(Child(), "s")
    dispatch.register(r".*\.Child", lambda obj, stem: "full")
    assert dispatch(Child(), "s") == "full"


def test_newest_regex_wins():
    dispatch = TypeDispatch("save")
    dispatch.register(r".*Child", lambda obj, stem: "old")
    dispatch.register(r".*\.Child", lambda obj, stem: "new")
    assert dispatch(Child(), "s") == "new"


def test_type_registration_for_the_nearest_class_beats_parent_pattern():
    dispatch = TypeDispatch("save")
    dispatch.register(re.escape(qualified(Base)), lambda obj, stem: "base-pattern")
    dispatch.register(Child, lambda obj, stem: "child-type")
    assert dispatch(GrandChild(), "s") == "child-type"
    assert dispatch(Base(), "s") == "base-pattern"


def test_default_is_used_when_nothing_matches_and_missing_default_raises():
    dispatch = TypeDispatch("save")
    with pytest.raises(MarshalError, match=re.escape(qualified(Base))):
        dispatch(Base(), "s")
    dispatch.default = lambda obj, stem: "default"
    assert dispatch(Base(), "s") == "default"


def _class_in_module(module_name, name="Thing"):
    cls = type(name, (), {})
    cls.__module__ = module_name
    return cls


def test_register_lazy_runs_only_when_first_needed_and_once():
    dispatch = TypeDispatch("save")
    dispatch.default = lambda obj, stem: "default"
    Thing = _class_in_module("fakelib.sub.module")
    calls = []

    @dispatch.register_lazy("fakelib")
    def register_fakelib():
        calls.append(1)
        dispatch.register(Thing, lambda obj, stem: "fakelib-saver")

    assert calls == []
    assert dispatch(3, "s") == "default"
    assert dispatch(Base(), "s") == "default"
    assert calls == []
    assert dispatch(Thing(), "s") == "fakelib-saver"
    assert calls == [1]
    assert dispatch(Thing(), "s") == "fakelib-saver"
    assert dispatch.dispatch(Thing)
    assert calls == [1]


def test_register_lazy_is_triggered_by_a_subclass_from_another_module():
    dispatch = TypeDispatch("save")
    Thing = _class_in_module("fakelib2.core")
    calls = []

    def register():
        calls.append(1)
        dispatch.register(Thing, lambda obj, stem: "thing")

    dispatch.register_lazy("fakelib2", register)

    class MyThing(Thing):
        pass

    assert dispatch(MyThing(), "s") == "thing"
    assert calls == [1]


def test_register_lazy_does_not_match_a_module_prefix():
    dispatch = TypeDispatch("save")
    dispatch.default = lambda obj, stem: "default"
    calls = []
    dispatch.register_lazy("fake", lambda: calls.append(1))
    assert dispatch(_class_in_module("fakery.x")(), "s") == "default"
    assert calls == []


def test_module_registries_register_numpy_and_pandas_lazily():
    # numpy and pandas are registered lazily on the module-level dispatcher
    assert isinstance(marshal.resource_save, TypeDispatch)
    assert marshal.resource_save.dispatch(np.ndarray) is not marshal.resource_save.default
    assert marshal.resource_save.dispatch(pd.DataFrame) is marshal.resource_save.dispatch(pd.Series)
    assert marshal.resource_save.dispatch(dict) is marshal.resource_save.default


# --- NameDispatch ------------------------------------------------------------------------


def test_name_dispatch_picks_loader_by_file_name_regex():
    dispatch = NameDispatch("load")
    dispatch.register(r".*\.txt", lambda path: ("txt", path))

    @dispatch.register(r".*\.special\.txt")
    def load_special(path):
        return ("special", path)

    assert dispatch("/data/dir.with.dots/value.txt") == ("txt", "/data/dir.with.dots/value.txt")
    assert dispatch("/data/value.special.txt")[0] == "special"
    assert dispatch.dispatch("value.special.txt") is load_special


def test_name_dispatch_matches_the_base_name_only_and_fully():
    dispatch = NameDispatch("load")
    dispatch.register(r"value\.csv", lambda path: "csv")
    assert dispatch("/some/dir/value.csv") == "csv"
    with pytest.raises(MarshalError, match="value.csv.bak"):
        dispatch("/some/dir/value.csv.bak")
    with pytest.raises(MarshalError):
        dispatch("/some/value.csv/other")


def test_module_loaders_choose_by_extension(tmp_path):
    assert marshal.resource_load.dispatch("value.pandas.pkl") is marshal._load_frame
    assert marshal.resource_load.dispatch("value.pkl") is marshal._load_pickle
    assert marshal.resource_load.dispatch("value.npy") is marshal._load_array
    assert marshal.resource_load.dispatch("value.dill") is marshal._load_dill


def test_users_extend_resource_save_and_resource_load_as_documented(tmp_path):
    """The module docstring: ``@resource_save.register(regex)`` / ``@resource_load.register(regex)``."""

    class Note:
        def __init__(self, text):
            self.text = text

    assert hasattr(resource_save, "register"), "resource_save has no .register (docstring promises one)"
    assert hasattr(resource_load, "register"), "resource_load has no .register (docstring promises one)"
    pattern = re.escape(qualified(Note))
    try:
        @resource_save.register(pattern)
        def save_note(obj, stem):
            with open(stem + ".note.txt", "w", encoding="utf-8") as fh:
                fh.write(obj.text)
            return stem + ".note.txt"

        @resource_load.register(r".*\.note\.txt")
        def load_note(path):
            with open(path, encoding="utf-8") as fh:
                return Note(fh.read())

        loaded, name = roundtrip(Note("hello"), tmp_path)
        assert name == "value.note.txt"
        assert isinstance(loaded, Note) and loaded.text == "hello"
    finally:
        marshal.resource_save._by_pattern[:] = [
            (p, f) for p, f in marshal.resource_save._by_pattern if p.pattern != pattern]
        marshal.resource_load._by_pattern[:] = [
            (p, f) for p, f in marshal.resource_load._by_pattern if p.pattern != r".*\.note\.txt"]


def test_pickle_by_reference_is_preferred_to_dill_for_module_functions(tmp_path):
    loaded, name = roundtrip(make_closure, tmp_path)
    assert name == "value.pkl"
    assert loaded is make_closure
    with open(tmp_path / "artifact" / "value.pkl", "rb") as fh:
        assert pickle.load(fh) is make_closure


# --- import cost: the module the steps carry ------------------------------------------------------




def test_marshal_source_has_no_triple_single_quotes():
    source = open(os.path.join(os.path.dirname(marshal.__file__), "marshal.py"), encoding="utf-8").read()
    assert "'" * 3 not in source


# --- registration on the real dispatchers ---------------------------------------------------------


@pytest.fixture
def restore_dispatchers():
    """Undo registrations a test makes on resource_save / resource_load."""
    saved = (dict(resource_save._by_type), list(resource_save._by_pattern), dict(resource_save._lazy),
             list(resource_load._by_pattern))
    yield
    resource_save._by_type.clear()
    resource_save._by_type.update(saved[0])
    resource_save._by_pattern[:] = saved[1]
    resource_save._lazy.clear()
    resource_save._lazy.update(saved[2])
    resource_load._by_pattern[:] = saved[3]


def _fake_module(name):
    import sys
    import types

    module = types.ModuleType(name)
    exec("class Thing:\n    def __init__(self, v):\n        self.v = v\n", module.__dict__)
    module.Thing.__module__ = name
    sys.modules[name] = module
    return module


def test_lazy_backend_registered_for_a_module_is_used_for_its_objects_and_subclasses(tmp_path, restore_dispatchers):
    import sys

    fake = _fake_module("fakelib_marshal")
    calls = []
    try:
        @resource_save.register_lazy("fakelib_marshal")
        def register():
            calls.append("registered")

            @resource_save.register(fake.Thing)
            def save_thing(obj, stem):
                with open(stem + ".thing.txt", "w") as fh:
                    fh.write(repr(obj.v))
                return stem + ".thing.txt"

        @resource_load.register(r".*\.thing\.txt")
        def load_thing(path):
            with open(path) as fh:
                return fake.Thing(eval(fh.read()))

        resource_save({"plain": 1}, str(tmp_path / "plain"))
        assert calls == []  # nothing from fakelib was saved yet

        class Sub(fake.Thing):  # MRO: a subclass (from another module) uses its parent's backend
            pass

        loaded, name = roundtrip(Sub([1, 2]), tmp_path, "sub")
        assert name == "value.thing.txt" and loaded.v == [1, 2]
        loaded, name = roundtrip(fake.Thing("x"), tmp_path, "thing")
        assert name == "value.thing.txt" and loaded.v == "x"
        assert calls == ["registered"]
    finally:
        sys.modules.pop("fakelib_marshal", None)


def test_regex_registration_on_resource_save_matches_qualified_names_and_subclasses(tmp_path, restore_dispatchers):
    @resource_save.register(re.escape(qualified(Base)))
    def save_base(obj, stem):
        with open(stem + ".base.txt", "w") as fh:
            fh.write(type(obj).__name__)
        return stem + ".base.txt"

    resource_load.register(r".*\.base\.txt", lambda path: open(path).read())
    assert roundtrip(GrandChild(), tmp_path, "g") == ("GrandChild", "value.base.txt")
    assert roundtrip(Base(), tmp_path, "b") == ("Base", "value.base.txt")


def test_a_saver_may_write_a_directory_and_it_is_replaced_atomically(tmp_path, restore_dispatchers):
    class Bundle:
        def __init__(self, parts):
            self.parts = parts

    @resource_save.register(Bundle)
    def save_bundle(obj, stem):
        os.makedirs(stem + ".bundle")
        for i, part in enumerate(obj.parts):
            with open(os.path.join(stem + ".bundle", str(i)), "w") as fh:
                fh.write(part)
        return stem + ".bundle"

    @resource_load.register(r".*\.bundle")
    def load_bundle(path):
        return Bundle([open(os.path.join(path, n)).read() for n in sorted(os.listdir(path))])

    path = str(tmp_path / "artifact")
    resource_save(Bundle(["a", "b", "c"]), path)
    resource_save(Bundle(["z"]), path)
    assert os.listdir(path) == ["value.bundle"]
    assert resource_load(path).parts == ["z"]
    assert resource_load(os.path.join(path, "value.bundle")).parts == ["z"]
    resource_save([1], path)
    assert os.listdir(path) == ["value.pkl"]


def test_resource_load_checks_the_format_it_is_given(tmp_path):
    path = str(tmp_path / "artifact")
    resource_save(np.arange(3), path)
    np.testing.assert_array_equal(resource_load(path, format="npy"), np.arange(3))
    with pytest.raises(MarshalError, match=r"holds format 'npy', but the artifact's metadata records format 'pkl'"):
        resource_load(path, format="pkl")


# --- a crash mid-write ------------------------------------------------------------------------------




# --- values that cannot be saved: the step's error names the variable, the step, the type, what to do --


class _FakeSparkFrame:
    pass


_FakeSparkFrame.__module__ = "pyspark.sql.dataframe"
_FakeSparkFrame.__qualname__ = "DataFrame"


def _unsaveable_values(tmp_path):
    import socket
    import sqlite3
    import threading

    handle = open(tmp_path / "open.txt", "w")
    connection = sqlite3.connect(":memory:")
    sock = socket.socket()
    return {
        "generator": ((i for i in range(3)), "builtins.generator", "generator"),
        "file": (handle, "_io.TextIOWrapper", "open file"),
        "socket": (sock, "socket.socket", "network connection"),
        "lock": (threading.Lock(), "_thread.lock", "lock"),
        "rlock": (threading.RLock(), "_thread.RLock", "lock"),
        "event": (threading.Event(), "threading.Event", "lock"),
        "thread": (threading.Thread(target=print), "threading.Thread", "thread"),
        "sqlite": (connection, "sqlite3.Connection", "database connection"),
        "cursor": (connection.cursor(), "sqlite3.Cursor", "database cursor"),
        "spark": (_FakeSparkFrame(), "pyspark.sql.dataframe.DataFrame", "Spark"),
    }, [handle, connection, sock]


def test_each_unsaveable_value_fails_the_step_with_a_message_that_says_what_to_do(tmp_path):
    from nbconvert_kfp.runtime.step import Step

    class Artifact:
        def __init__(self, path):
            self.path, self.metadata = str(path), {}

    values, to_close = _unsaveable_values(tmp_path)
    try:
        for key, (value, type_name, words) in values.items():
            step = Step("producer")
            step.namespace[f"my_{key}"] = value
            with pytest.raises(MarshalError) as info:
                step.save({f"my_{key}": Artifact(tmp_path / key)})
            message = str(info.value)
            assert f"step 'producer' cannot save variable 'my_{key}' ({type_name})" in message, message
            assert words in message, message
            assert "Recreate the value in the step that reads it" in message
            assert "`functions` cell" in message
            assert not any(n.startswith("value.") for n in os.listdir(tmp_path / key))
    finally:
        for thing in to_close:
            thing.close()


def test_in_memory_streams_and_spark_schema_types_are_saveable(tmp_path):
    import io

    assert marshal.unsaveable_reason(io.BytesIO(b"abc")) is None
    assert marshal.unsaveable_reason(io.StringIO("abc")) is None
    loaded, _ = roundtrip(io.BytesIO(b"abc"), tmp_path)
    assert loaded.getvalue() == b"abc"

    class Row(tuple):
        pass

    Row.__module__ = "pyspark.sql.types"
    assert marshal.unsaveable_reason(Row((1, 2))) is None


def test_a_value_nested_in_a_container_fails_with_pickles_reason(tmp_path):
    from nbconvert_kfp.runtime.step import Step

    class Artifact:
        def __init__(self, path):
            self.path, self.metadata = str(path), {}

    step = Step("nested")
    step.namespace["bag"] = {"items": (i for i in range(3))}
    with pytest.raises(MarshalError, match=r"cannot save variable 'bag' \(builtins.dict\).*generator.*"
                                           r"Recreate the value"):
        step.save({"bag": Artifact(tmp_path / "bag")})
