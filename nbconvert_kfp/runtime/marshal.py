"""Marshal: save a notebook variable to a KFP artifact and load it back, by type.

This module runs inside pipeline steps. It imports only the standard library at
import time: a backend's library (numpy, pandas, torch, ...) is imported the first
time a value of that library is saved or loaded. Generated pipeline scripts carry
this module's source, so steps need no nbconvert-kfp install.

``resource_save(obj, path)`` writes ``obj`` into the directory ``path`` as one file
(or one directory) named ``value.<format>``; ``resource_load(path)`` reads it back,
choosing the loader by that name. Both are dispatchers that users extend::

    @resource_save.register(r"numpy\\..*")      # regex on the type's qualified name
    def save_array(obj, stem):                   # stem is "<dir>/value": add a suffix
        numpy.save(stem + ".npy", obj)
        return stem + ".npy"

    @resource_load.register(r".*\\.npy")        # regex on the file name
    def load_array(path):
        return numpy.load(path)

``resource_save.register`` also takes a type or a tuple of types, and
``resource_save.register_lazy("torch")`` registers a function that runs (and
registers torch's savers) only when a torch object is first saved. Dispatch walks
the type's MRO, so a subclass uses its parent's saver.

Built-in formats (the part of the file name after ``value.``):

=================  ==========================================================
``npy``            numpy arrays (loaded copy-on-write memory-mapped when large)
``pandas.pkl``     pandas DataFrame / Series (pickle protocol 5: exact dtypes);
                   ``pandas.chunked.pkl`` when long string columns are written in chunks
``scipy.npz``      scipy.sparse matrices and arrays (csr, csc, coo, bsr, dia)
``joblib``         scikit-learn estimators and pipelines
``xgboost.ubj``    xgboost Booster (XGBoost's UBJSON model format)
``xgboost.dmatrix``  xgboost DMatrix (XGBoost's binary DMatrix buffer)
``lightgbm.json``  lightgbm Booster (its model string, plus best iteration)
``torch.pt``       torch tensors and nn.Modules (torch.save)
``keras``          Keras models (the ``.keras`` format)
``tf.savedmodel``  TensorFlow tf.Module objects that are not Keras models
``pil.png``        PIL images in PNG's lossless modes
``pkl``            anything else pickle protocol 5 can save
``dill``           what pickle cannot save: lambdas, closures, ...
=================  ==========================================================

A backend that cannot write a particular value (a pipeline holding a lambda, an
image in a mode PNG lacks) falls back to pickle, then dill. Values that cannot be
saved at all (generators, open files, sockets, locks, database connections, Spark
objects) raise ``MarshalError`` with the reason.

Writes are atomic: the value is written in a scratch directory inside ``path``
and renamed into place, so a step killed mid-write never leaves a half-written
``value.*`` for the next step to load.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import shutil
import struct
import sys
import types
import uuid
from typing import Any, Callable, Iterator

#: Name of the file stem inside an artifact directory.
VALUE_STEM = "value"
_PARTIAL = ".partial-"

#: ``.npy`` files at least this large load as copy-on-write memory maps (None: never).
MMAP_MIN_BYTES: int | None = 32 * 1024 * 1024


class MarshalError(Exception):
    """A value cannot be saved to, or loaded from, an artifact."""


def _qualified_name(cls: type) -> str:
    return f"{getattr(cls, '__module__', None) or 'builtins'}.{cls.__qualname__}"


# --- dispatchers -------------------------------------------------------------------------


class TypeDispatch:
    """Choose a function by an object's type: by class, by regex on its qualified name, or lazily by module.

    Lookup walks the type's MRO, so subclasses use their parent's function. A lazy
    registration (``register_lazy("torch")``) runs the first time an object whose
    type (or one of its bases) comes from that top-level module is dispatched.
    """

    def __init__(self, name: str):
        self.__name__ = name
        self._by_type: dict[type, Callable] = {}
        self._by_pattern: list[tuple[re.Pattern[str], Callable]] = []
        self._lazy: dict[str, Callable[[], None]] = {}
        self.default: Callable | None = None

    def register(self, key: type | tuple[type, ...] | str, func: Callable | None = None):
        """Register ``func`` for a type, a tuple of types or a regex on qualified type names."""

        def wrapper(f: Callable) -> Callable:
            if isinstance(key, str):
                self._by_pattern.insert(0, (re.compile(key), f))
            else:
                for cls in key if isinstance(key, tuple) else (key,):
                    self._by_type[cls] = f
            return f

        return wrapper(func) if func is not None else wrapper

    def register_lazy(self, toplevel: str, func: Callable[[], None] | None = None):
        """Register a function that registers the backends of module ``toplevel`` when first needed."""

        def wrapper(f: Callable[[], None]) -> Callable[[], None]:
            self._lazy[toplevel] = f
            return f

        return wrapper(func) if func is not None else wrapper

    def dispatch(self, cls: type) -> Callable:
        """Return the function registered for ``cls``."""
        for base in cls.__mro__:
            toplevel = (getattr(base, "__module__", None) or "").partition(".")[0]
            register = self._lazy.pop(toplevel, None)
            if register is not None:
                register()
                return self.dispatch(cls)
        for base in cls.__mro__:
            if base in self._by_type:
                return self._by_type[base]
            qualified = _qualified_name(base)
            for pattern, func in self._by_pattern:
                if pattern.fullmatch(qualified):
                    return func
        if self.default is None:
            raise MarshalError(f"no {self.__name__} function for {_qualified_name(cls)}")
        return self.default

    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Dispatch on ``type(obj)`` and call the chosen function."""
        return self.dispatch(type(obj))(obj, *args, **kwargs)


class NameDispatch:
    """Choose a function by a regex on a file name; the newest registration is tried first."""

    def __init__(self, name: str):
        self.__name__ = name
        self._by_pattern: list[tuple[re.Pattern[str], Callable]] = []

    def register(self, pattern: str, func: Callable | None = None):
        """Register ``func`` for file names that fully match ``pattern``."""

        def wrapper(f: Callable) -> Callable:
            self._by_pattern.insert(0, (re.compile(pattern), f))
            return f

        return wrapper(func) if func is not None else wrapper

    def dispatch(self, filename: str) -> Callable:
        """Return the function registered for ``filename``."""
        base = os.path.basename(filename)
        for pattern, func in self._by_pattern:
            if pattern.fullmatch(base):
                return func
        raise MarshalError(f"no {self.__name__} function for a file named {base!r}")

    def __call__(self, path: str, *args: Any, **kwargs: Any) -> Any:
        """Dispatch on the file name and call the chosen function."""
        return self.dispatch(path)(path, *args, **kwargs)


def _partial_is_stale(name: str) -> bool:
    """Whether a scratch folder ``.partial-<pid>-<id>`` was left by a process that no longer runs."""
    pid = name[len(_PARTIAL):].partition("-")[0]
    if not pid.isdigit():
        return True  # an older scratch folder without its writer's pid
    if int(pid) == os.getpid():
        return True  # this process writes one value at a time: the folder is from an earlier save
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


class ResourceSaver(TypeDispatch):
    """``resource_save(obj, path)``: save ``obj`` into directory ``path`` with the function registered for its type.

    A registered function gets the object and a file *stem* (``<dir>/value``), adds
    its own suffix, writes one file (or one directory) and returns its path.
    """

    def __call__(self, obj: Any, path: str) -> str:  # type: ignore[override]
        """Save ``obj`` into the directory ``path`` atomically; return the file written."""
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.startswith(VALUE_STEM + ".") or (name.startswith(_PARTIAL) and _partial_is_stale(name)):
                _remove(os.path.join(path, name))
        check_saveable(obj)
        partial = os.path.join(path, f"{_PARTIAL}{os.getpid()}-{uuid.uuid4().hex}")
        os.makedirs(partial)
        try:
            written = self.dispatch(type(obj))(obj, os.path.join(partial, VALUE_STEM))
            final = os.path.join(path, os.path.basename(written))
            os.replace(written, final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return final


class ResourceLoader(NameDispatch):
    """``resource_load(path)``: load the value saved in directory (or file) ``path`` by its file name."""

    def __call__(self, path: str, format: str | None = None) -> Any:  # type: ignore[override]
        """Load the value that ``resource_save`` wrote; if ``format`` is given, the file must have it."""
        path = find_value(path)
        if format is not None and format_of(path) != format:
            raise MarshalError(
                f"{path} holds format {format_of(path)!r}, but the artifact's metadata records "
                f"format {format!r}: the file was replaced after the producing step wrote it")
        return self.dispatch(path)(path)


def find_value(path: str) -> str:
    """Return the ``value.*`` file (or directory) inside artifact directory ``path``, or ``path`` itself."""
    if os.path.isdir(path) and not os.path.basename(path).startswith(VALUE_STEM + "."):
        names = sorted(n for n in os.listdir(path) if n.startswith(VALUE_STEM + "."))
        if not names:
            raise MarshalError(f"no saved value in {path}")
        return os.path.join(path, names[0])
    if not os.path.exists(path):
        raise MarshalError(f"no saved value at {path}")
    return path


def format_of(path: str) -> str:
    """Return the format recorded by a saved file's name (``npy``, ``pandas.pkl``, ...)."""
    return os.path.basename(path).partition(".")[2]


resource_save = ResourceSaver("resource_save")
resource_load = ResourceLoader("resource_load")


# --- values that cannot be saved -----------------------------------------------------------

_PROCESS_BOUND = {
    "_thread.lock": "a lock belongs to the process that created it",
    "_thread.RLock": "a lock belongs to the process that created it",
    "threading.Condition": "a lock belongs to the process that created it",
    "threading.Semaphore": "a lock belongs to the process that created it",
    "threading.Event": "a lock belongs to the process that created it",
    "threading.Barrier": "a lock belongs to the process that created it",
    "threading.Thread": "a thread runs in the process that started it",
    "multiprocessing.synchronize.SemLock": "a lock belongs to the process that created it",
    "socket.socket": "a network connection belongs to the process that opened it",
    "ssl.SSLSocket": "a network connection belongs to the process that opened it",
    "sqlite3.Connection": "a database connection belongs to the process that opened it",
    "sqlite3.Cursor": "a database cursor belongs to the process that opened it",
    "subprocess.Popen": "a child process belongs to the process that started it",
    "concurrent.futures._base.Executor": "a worker pool belongs to the process that started it",
    "multiprocessing.pool.Pool": "a worker pool belongs to the process that started it",
    "mmap.mmap": "a memory map belongs to the process that made it",
}


def unsaveable_reason(obj: Any) -> str | None:
    """Why ``obj`` can never travel to another step, or None if it may be saved.

    Generators, open files, sockets, locks, threads, database connections and Spark
    objects live in the process (or the Spark driver) of the step that made them.
    """
    if isinstance(obj, (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType)):
        return "a generator keeps its position in the step that runs it"
    if isinstance(obj, io.IOBase) and not isinstance(obj, (io.BytesIO, io.StringIO)):
        return "an open file belongs to the process that opened it"
    for base in type(obj).__mro__:
        qualified = _qualified_name(base)
        if qualified in _PROCESS_BOUND:
            return _PROCESS_BOUND[qualified]
        if qualified.startswith(("pyspark.", "py4j.")) and not qualified.startswith("pyspark.sql.types."):
            return ("a Spark object lives in this step's Spark session; write a Spark DataFrame to "
                    "storage (df.write.parquet(...)) and read it back, or pass df.toPandas()")
    return None


def check_saveable(obj: Any) -> None:
    """Raise ``MarshalError`` if ``obj`` is a value that cannot be saved (see ``unsaveable_reason``)."""
    reason = unsaveable_reason(obj)
    if reason is not None:
        raise MarshalError(f"a {_qualified_name(type(obj))} cannot be saved: {reason}")


#: How many objects ``_path_to`` visits looking for where an unsaveable part sits.
_SEARCH_LIMIT = 200_000


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    """The parts of a value with the Python expression that reaches each (``[0]``, ``['key']``, ``.attr``)."""
    if isinstance(obj, (str, bytes, bytearray, int, float, complex, bool, type(None), type, types.ModuleType)):
        return
    if isinstance(obj, dict):
        for key, item in obj.items():
            yield f"[{key!r}]", item
        return
    if isinstance(obj, (list, tuple)):
        for index, item in enumerate(obj):
            yield f"[{index}]", item
        return
    if isinstance(obj, (set, frozenset)):
        for item in obj:
            yield " (an item of the set)", item
        return
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        for name, item in attributes.items():
            yield f".{name}", item
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                yield f".{name}", getattr(obj, name)


def _path_to(root: Any, target: Any) -> str | None:
    """The expression that reaches ``target`` inside ``root`` (``[2]['log']``), searched breadth first."""
    queue: list[tuple[Any, str]] = [(root, "")]
    seen = {id(root)}
    for obj, path in queue:
        if obj is target:
            return path
        if len(queue) > _SEARCH_LIMIT:
            return None
        try:
            for step, child in _children(obj):
                if id(child) not in seen:
                    seen.add(id(child))
                    queue.append((child, path + step))
        except Exception:  # a value whose parts cannot be listed is skipped
            continue
    return None


class _Unsaveable(Exception):
    """An unsaveable object met inside the value being pickled."""

    def __init__(self, obj: Any, reason: str):
        super().__init__(reason)
        self.obj, self.reason = obj, reason


def _nested_error(root: Any, found: _Unsaveable) -> MarshalError:
    """The error for an unsaveable object inside ``root``, naming where it sits."""
    where = _path_to(root, found.obj)
    place = f"at {where}" if where else "somewhere inside it"
    return MarshalError(f"the value holds a {_qualified_name(type(found.obj))} {place}, which cannot be saved: "
                        f"{found.reason}")


# --- pickle and dill: the default ------------------------------------------------------------

#: Errors by which pickle (or a library's saver) says it cannot write a value.
_CANNOT_WRITE = (pickle.PicklingError, AttributeError, TypeError, ValueError, NotImplementedError)


def _discard(stem: str) -> None:
    """Remove whatever a failed saver left at ``stem.*``."""
    folder, prefix = os.path.split(stem)
    for name in os.listdir(folder):
        if name.startswith(prefix + "."):
            _remove(os.path.join(folder, name))


def _save_pickle(obj: Any, stem: str) -> str:
    path = stem + ".pkl"
    try:
        with open(path, "wb") as fh:
            pickle.dump(obj, fh, protocol=5)
        return path
    except (pickle.PicklingError, AttributeError, TypeError) as err:
        os.remove(path)
        try:
            import dill
        except ImportError:
            raise MarshalError(f"{err}; install 'dill' in the step image to save such values") from err
        path = stem + ".dill"

        class Pickler(dill.Pickler):  # type: ignore[misc,name-defined]
            """dill, refusing what would not be the same in the next step (dill reopens files at offset 0)."""

            def persistent_id(self, part: Any) -> None:
                reason = unsaveable_reason(part)
                if reason is not None:
                    raise _Unsaveable(part, reason)
                return None

        try:
            with open(path, "wb") as fh:
                Pickler(fh, protocol=5, recurse=True).dump(obj)
        except _Unsaveable as found:
            os.remove(path)
            raise _nested_error(obj, found) from None
        except BaseException:
            os.remove(path)
            raise
        return path


resource_save.default = _save_pickle


def _or_pickle(save: Callable[[Any, str], str]) -> Callable[[Any, str], str]:
    """Wrap a library's saver: a value it cannot write is pickled (or dilled) instead."""

    def saver(obj: Any, stem: str) -> str:
        try:
            return save(obj, stem)
        except _CANNOT_WRITE:
            _discard(stem)
            return _save_pickle(obj, stem)

    saver.__name__ = saver.__qualname__ = save.__name__
    saver.__doc__ = save.__doc__
    return saver


# Loaders are looked up newest first: more specific file names are registered last.
@resource_load.register(r".*\.pkl")
def _load_pickle(path: str) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


@resource_load.register(r".*\.dill")
def _load_dill(path: str) -> Any:
    import dill

    with open(path, "rb") as fh:
        return dill.load(fh)


# --- numpy -------------------------------------------------------------------------------------


@resource_save.register_lazy("numpy")
def _register_numpy() -> None:
    import numpy

    @resource_save.register(numpy.ndarray)
    def _save_array(obj: Any, stem: str) -> str:
        """``.npy``: raw bytes behind a header; a memmap is saved as the array it shows."""
        if obj.dtype.hasobject or type(obj) not in (numpy.ndarray, numpy.memmap):
            return _save_pickle(obj, stem)
        with open(stem + ".npy", "wb") as fh:
            numpy.save(fh, obj, allow_pickle=False)
        return stem + ".npy"


@resource_load.register(r".*\.npy")
def _load_array(path: str) -> Any:
    """Load a ``.npy`` file; a large one is mapped copy-on-write instead of read.

    The result is a plain, writable ``numpy.ndarray``. A large array's pages are
    mapped with ``mmap.ACCESS_COPY`` (``mmap_mode="c"``): they are read from the
    file when first touched, a write copies the page into the step's memory and
    never reaches the file, and untouched pages cost no memory. The array is
    built on the ``mmap`` object, not as a ``numpy.memmap``, so libraries that
    special-case memmaps (joblib ships them to workers by file name, which would
    lose in-place changes) treat it as an ordinary array. The one visible
    difference: the array does not own its data, so ``a.resize(...)`` in place
    raises (``numpy.resize(a, ...)`` works). Set ``MMAP_MIN_BYTES = None`` to read
    every array into memory.
    """
    import numpy

    if MMAP_MIN_BYTES is None or os.path.getsize(path) < MMAP_MIN_BYTES:
        return numpy.load(path, allow_pickle=False)
    import mmap

    npformat = numpy.lib.format
    with open(path, "rb") as fh:
        version = npformat.read_magic(fh)
        if version == (1, 0):
            shape, fortran_order, dtype = npformat.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran_order, dtype = npformat.read_array_header_2_0(fh)
        else:
            return numpy.load(path, allow_pickle=False)
        offset = fh.tell()
        if dtype.hasobject or offset + dtype.itemsize * int(numpy.prod(shape)) > os.path.getsize(path):
            return numpy.load(path, allow_pickle=False)
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    return numpy.ndarray(shape, dtype, buffer=mapped, offset=offset, order="F" if fortran_order else "C")


# --- pandas ------------------------------------------------------------------------------------


#: A column of more strings than this is pickled in chunks of this many (see ``_save_frame``).
FRAME_CHUNK = 1 << 16
#: An Arrow-backed column (pandas 3's ``str`` dtype with pyarrow) larger than this many bytes is
#: written in Arrow's IPC stream format, in batches of ``FRAME_CHUNK`` rows.
ARROW_MIN_BYTES = 1 << 20
_CHUNKED_TRAILER = struct.Struct("<QQ8s")
_CHUNKED_MAGIC = b"nbkfp-c2"


@resource_save.register_lazy("pandas")
def _register_pandas() -> None:
    import numpy
    import pandas

    class FramePickler(pickle.Pickler):
        """Pickle protocol 5 that sets long string columns aside, to be written in chunks after the frame."""

        def __init__(self, fh: Any):
            super().__init__(fh, protocol=5)
            self.set_aside: list[Any] = []

        def persistent_id(self, value: Any) -> Any:
            if (type(value) is numpy.ndarray and value.dtype == object and value.size > FRAME_CHUNK
                    and (value.flags.c_contiguous or value.flags.f_contiguous)
                    and pandas.api.types.infer_dtype(value.ravel(order="K"), skipna=True) in ("string", "empty")):
                self.set_aside.append(value)
                return ("chunked", len(self.set_aside) - 1)
            if (isinstance(value, pandas.api.extensions.ExtensionArray) and hasattr(value, "__arrow_array__")
                    and type(value).__name__ in ("ArrowStringArray", "ArrowExtensionArray")
                    and value.nbytes > ARROW_MIN_BYTES):
                self.set_aside.append(value)
                return ("arrow", len(self.set_aside) - 1)
            return None

    @resource_save.register((pandas.DataFrame, pandas.Series))
    def _save_frame(obj: Any, stem: str) -> str:
        """Pickle protocol 5: dtypes, index, categoricals, time zones and attrs are kept exactly.

        Numeric data is written straight from its buffers. A long column of strings
        is written after the frame, in chunks: a NumPy object column as pickles that
        each have their own memo (one memo for a million strings would add half the
        frame's size to the peak memory of the step; strings repeated within a chunk
        are still stored once), an Arrow-backed column in Arrow's IPC stream format
        (pickling it would copy all of its buffers at once).
        """
        path = stem + ".pandas.pkl"
        with open(path, "wb") as fh:
            pickler = FramePickler(fh)
            pickler.dump(obj)
            if not pickler.set_aside:
                return path
            index = []
            for array in pickler.set_aside:
                start = fh.tell()
                if isinstance(array, numpy.ndarray):
                    order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
                    flat = array.ravel(order=order)
                    for first in range(0, flat.size, FRAME_CHUNK):
                        pickle.dump(flat[first:first + FRAME_CHUNK], fh, protocol=5)
                    index.append(("numpy", start, array.shape, order))
                else:
                    _write_arrow(array.__arrow_array__(), fh)
                    index.append(("arrow", start, fh.tell(), array.dtype))
            offset = fh.tell()
            pickle.dump(index, fh, protocol=5)
            fh.write(_CHUNKED_TRAILER.pack(offset, len(index), _CHUNKED_MAGIC))
        os.replace(path, stem + ".pandas.chunked.pkl")
        return stem + ".pandas.chunked.pkl"


def _write_arrow(array: Any, fh: Any) -> None:
    """Write a pyarrow (chunked) array as an IPC stream of ``FRAME_CHUNK``-row batches (its buffers are not copied whole)."""
    import pyarrow

    table = pyarrow.table({"v": array})
    with pyarrow.ipc.new_stream(fh, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=FRAME_CHUNK):
            writer.write_batch(batch)


def _read_arrow(fh: Any, start: int, end: int) -> Any:
    import pyarrow

    fh.seek(start)
    with pyarrow.ipc.open_stream(pyarrow.BufferReader(fh.read(end - start))) as reader:
        return reader.read_all().column("v")


@resource_load.register(r".*\.pandas\.pkl")
def _load_frame(path: str) -> Any:
    import pandas

    return pandas.read_pickle(path)


@resource_load.register(r".*\.pandas\.chunked\.pkl")
def _load_chunked_frame(path: str) -> Any:
    """A frame pickle followed by its long string columns, an index of them, and a trailer that locates the index."""
    import numpy
    import pandas

    with open(path, "rb") as fh:
        fh.seek(-_CHUNKED_TRAILER.size, os.SEEK_END)
        offset, count, magic = _CHUNKED_TRAILER.unpack(fh.read(_CHUNKED_TRAILER.size))
        if magic != _CHUNKED_MAGIC:
            raise MarshalError(f"{path} is not a chunked pandas pickle")
        fh.seek(offset)
        index = pickle.load(fh)
        arrays = []
        for entry in index:
            if entry[0] == "arrow":
                _, start, end, dtype = entry
                arrays.append(pandas.array(_read_arrow(fh, start, end), dtype=dtype))
                continue
            _, start, shape, order = entry
            fh.seek(start)
            flat = numpy.empty(int(numpy.prod(shape)), dtype=object)
            for first in range(0, flat.size, FRAME_CHUNK):
                flat[first:first + FRAME_CHUNK] = pickle.load(fh)
            arrays.append(flat.reshape(shape, order=order))
        fh.seek(0)
        unpickler = pickle.Unpickler(fh)
        unpickler.persistent_load = lambda pid: arrays[pid[1]]
        return unpickler.load()


# --- scipy.sparse -----------------------------------------------------------------------------

_SPARSE_INDEX_ARRAYS = ("indices", "indptr", "offsets")


@resource_save.register_lazy("scipy")
def _register_scipy() -> None:
    import scipy.sparse

    @resource_save.register(tuple(t for t in (scipy.sparse.spmatrix, getattr(scipy.sparse, "sparray", None)) if t))
    @_or_pickle
    def _save_sparse(obj: Any, stem: str) -> str:
        """``save_npz``, uncompressed: the format (csr, csc, coo, bsr, dia), matrix or array; lil and dok pickle."""
        if obj.format not in ("csr", "csc", "coo", "bsr", "dia"):
            return _save_pickle(obj, stem)
        path = stem + ".scipy.npz"
        with open(path, "wb") as fh:
            scipy.sparse.save_npz(fh, obj, compressed=False)
        return path


@resource_load.register(r".*\.scipy\.npz")
def _load_sparse(path: str) -> Any:
    """``load_npz``, then the index arrays get back the dtype they were saved with (load_npz may narrow it)."""
    import numpy
    import scipy.sparse

    matrix = scipy.sparse.load_npz(path)
    with numpy.load(path, allow_pickle=False) as stored:
        if matrix.format == "coo" and hasattr(matrix, "coords") and "row" in stored.files:
            coords = (stored["row"], stored["col"])
            if [c.dtype for c in matrix.coords] != [c.dtype for c in coords]:
                matrix.coords = coords
            return matrix
        for name in _SPARSE_INDEX_ARRAYS:
            if name in stored.files and getattr(matrix, name).dtype != stored[name].dtype:
                setattr(matrix, name, stored[name])
    return matrix


# --- scikit-learn -----------------------------------------------------------------------------


@resource_save.register_lazy("sklearn")
def _register_sklearn() -> None:
    import sklearn.base

    @resource_save.register(sklearn.base.BaseEstimator)
    @_or_pickle
    def _save_estimator(obj: Any, stem: str) -> str:
        """joblib: estimators and pipelines, their numpy arrays written raw."""
        import joblib

        path = stem + ".joblib"
        joblib.dump(obj, path)
        return path


@resource_load.register(r".*\.joblib")
def _load_joblib(path: str) -> Any:
    import joblib

    return joblib.load(path)


# --- xgboost -----------------------------------------------------------------------------------


@resource_save.register_lazy("xgboost")
def _register_xgboost() -> None:
    import xgboost

    @resource_save.register(xgboost.Booster)
    def _save_booster(obj: Any, stem: str) -> str:
        """XGBoost's UBJSON model: trees, objective, attributes and feature names/types, exactly."""
        path = stem + ".xgboost.ubj"
        obj.save_model(path)
        return path

    @resource_save.register(xgboost.DMatrix)
    def _save_dmatrix(obj: Any, stem: str) -> str:
        """XGBoost's binary DMatrix buffer: data, label, weight, base margin, groups, feature names/types."""
        if type(obj) is not xgboost.DMatrix:
            raise MarshalError(
                f"a {_qualified_name(type(obj))} cannot be saved (XGBoost can write only a plain "
                "DMatrix); build it in the step that uses it")
        path = stem + ".xgboost.dmatrix"
        obj.save_binary(path, silent=True)
        return path


@resource_load.register(r".*\.xgboost\.ubj")
def _load_booster(path: str) -> Any:
    """The loaded Booster predicts exactly as the saved one.

    Training parameters that are not part of XGBoost's model format (``eta``,
    ``max_depth``, ...) are not kept: pass them again to continue training.
    """
    import xgboost

    return xgboost.Booster(model_file=path)


@resource_load.register(r".*\.xgboost\.dmatrix")
def _load_dmatrix(path: str) -> Any:
    """The loaded DMatrix has the saved data and meta information.

    The Python-side constructor options (``nthread``, ``missing``) are not
    kept; ``missing`` was already applied to the data when the DMatrix was built.
    """
    import xgboost

    return xgboost.DMatrix(path, silent=True)


# --- lightgbm ----------------------------------------------------------------------------------


@resource_save.register_lazy("lightgbm")
def _register_lightgbm() -> None:
    import lightgbm

    @resource_save.register(lightgbm.Booster)
    @_or_pickle
    def _save_lightgbm(obj: Any, stem: str) -> str:
        """JSON: the model string of every iteration, with best iteration, best score and params."""
        import json

        document = {
            "model": obj.model_to_string(num_iteration=-1),
            "best_iteration": obj.best_iteration,
            "best_score": {k: dict(v) for k, v in obj.best_score.items()},
            "params": obj.params,
        }
        text = json.dumps(document, allow_nan=True)
        if json.loads(text) != document:
            raise ValueError("the booster's params or scores do not survive JSON")
        path = stem + ".lightgbm.json"
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path


@resource_load.register(r".*\.lightgbm\.json")
def _load_lightgbm(path: str) -> Any:
    import collections
    import json

    import lightgbm

    with open(path, encoding="utf-8") as fh:
        document = json.load(fh)
    booster = lightgbm.Booster(model_str=document["model"])
    booster.best_iteration = document["best_iteration"]
    booster.best_score = collections.defaultdict(collections.OrderedDict)
    for name, scores in document["best_score"].items():
        booster.best_score[name].update(scores)
    booster.params = document["params"]
    return booster


# --- torch -------------------------------------------------------------------------------------


@resource_save.register_lazy("torch")
def _register_torch() -> None:
    import torch

    @resource_save.register((torch.Tensor, torch.nn.Module))
    @_or_pickle
    def _save_torch(obj: Any, stem: str) -> str:
        """``torch.save``: dtype, device, shape, strides, requires_grad, a module's class and parameters.

        A module is saved whole, so its class must exist in the step that loads it:
        a class defined in the notebook is re-run there by the generated pipeline.
        """
        path = stem + ".torch.pt"
        torch.save(obj, path)
        return path


@resource_load.register(r".*\.torch\.pt")
def _load_torch(path: str) -> Any:
    """``torch.load``; a value saved on a GPU is loaded onto the CPU when this step has no GPU."""
    import torch

    location = None if torch.cuda.is_available() else "cpu"
    return torch.load(path, map_location=location, weights_only=False)


# --- Keras and TensorFlow -------------------------------------------------------------------------


def _save_keras(obj: Any, stem: str) -> str:
    """The ``.keras`` format: architecture, weights, optimizer state and compile settings."""
    path = stem + ".keras"
    obj.save(path)
    return path


@resource_save.register_lazy("keras")
def _register_keras() -> None:
    import keras

    resource_save.register(keras.Model, _or_pickle(_save_keras))


@resource_save.register_lazy("tensorflow")
def _register_tensorflow() -> None:
    import tensorflow

    @resource_save.register(tensorflow.Module)
    def _save_tf_module(obj: Any, stem: str) -> str:
        """A SavedModel directory; tf.keras models are saved as ``.keras`` instead."""
        if isinstance(obj, tensorflow.keras.Model):
            return _or_pickle(_save_keras)(obj, stem)
        path = stem + ".tf.savedmodel"
        tensorflow.saved_model.save(obj, path)
        return path


@resource_load.register(r".*\.keras")
def _load_keras(path: str) -> Any:
    """``keras.models.load_model``; classes and functions defined in the notebook are passed as custom objects."""
    import keras

    main = vars(sys.modules["__main__"]) if "__main__" in sys.modules else {}
    custom = {k: v for k, v in main.items() if callable(v) and getattr(v, "__module__", None) == "__main__"}
    return keras.models.load_model(path, custom_objects=custom)


@resource_load.register(r".*\.tf\.savedmodel")
def _load_tf_module(path: str) -> Any:
    """``tf.saved_model.load``: the restored object has the module's variables and tf.functions, not its Python class."""
    import tensorflow

    return tensorflow.saved_model.load(path)


# --- PIL ----------------------------------------------------------------------------------------

#: Image modes that PNG stores without loss.
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")
_PNG_KEY = "nbconvert-kfp"


@resource_save.register_lazy("PIL")
def _register_pil() -> None:
    from PIL import Image

    @resource_save.register(Image.Image)
    @_or_pickle
    def _save_image(obj: Any, stem: str) -> str:
        """PNG in lossless modes, the image's ``info`` and ``format`` in a text chunk; other modes pickle."""
        import base64

        from PIL import PngImagePlugin

        if obj.mode not in _PNG_MODES:
            return _save_pickle(obj, stem)
        extra = {"info": dict(obj.info), "format": obj.format}
        chunk = PngImagePlugin.PngInfo()
        chunk.add_text(_PNG_KEY, base64.b64encode(pickle.dumps(extra, protocol=5)).decode("ascii"), zip=True)
        path = stem + ".pil.png"
        obj.save(path, format="PNG", pnginfo=chunk)
        return path


@resource_load.register(r".*\.pil\.png")
def _load_image(path: str) -> Any:
    import base64

    from PIL import Image

    with Image.open(path) as opened:
        opened.load()
        image = opened.copy()
    text = image.info.pop(_PNG_KEY, None)
    if text is not None:
        extra = pickle.loads(base64.b64decode(text))
        image.info, image.format = extra["info"], extra["format"]
    return image
