"""Marshal: save a notebook variable to a KFP artifact and load it back, by type.

This module runs inside pipeline steps. It imports only the standard library at
import time (numpy, pandas, dill are imported when an object of theirs is met), and
generated pipeline scripts carry its source, so steps need no nbconvert-kfp install.

``resource_save(obj, path)`` writes ``obj`` into the directory ``path`` as one file
``value.<ext>``; ``resource_load(path)`` reads it back, choosing the loader by the
file name. Both are dispatchers that users extend::

    @resource_save.register(r"numpy\\..*")      # regex on the type's qualified name
    def save_array(obj, path):                   # path is the file stem: add a suffix
        numpy.save(path + ".npy", obj)
        return path + ".npy"

    @resource_load.register(r".*\\.npy")        # regex on the file name
    def load_array(path):
        return numpy.load(path)
"""

from __future__ import annotations

import os
import pickle
import re
import uuid
from typing import Any, Callable

#: Name of the file stem inside an artifact directory.
VALUE_STEM = "value"
_PARTIAL = ".partial-"


class MarshalError(Exception):
    """A value cannot be saved to, or loaded from, an artifact."""


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class TypeDispatch:
    """Choose a function by an object's type: by class, by regex on its qualified name, or lazily by module.

    Lookup walks the type's MRO, so subclasses use their parent's function. A lazy
    registration (``register_lazy("torch")``) runs the first time an object whose
    type comes from that top-level module is dispatched.
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
            toplevel = base.__module__.partition(".")[0]
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
    """Choose a function by a regex on a file name."""

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


class ResourceSaver(TypeDispatch):
    """``resource_save(obj, path)``: save ``obj`` into directory ``path`` with the function registered for its type.

    A registered function gets the object and a file *stem* (``path/value``), adds
    its own suffix, writes the file and returns the file's path.
    """

    def __call__(self, obj: Any, path: str) -> str:  # type: ignore[override]
        """Save ``obj`` into the directory ``path`` atomically; return the file written."""
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.startswith(VALUE_STEM + "."):
                os.remove(os.path.join(path, name))
        partial = os.path.join(path, f"{_PARTIAL}{uuid.uuid4().hex}")
        os.makedirs(partial)
        try:
            written = self.dispatch(type(obj))(obj, os.path.join(partial, VALUE_STEM))
            final = os.path.join(path, os.path.basename(written))
            os.replace(written, final)
        finally:
            for leftover in os.listdir(partial):
                os.remove(os.path.join(partial, leftover))
            os.rmdir(partial)
        return final


class ResourceLoader(NameDispatch):
    """``resource_load(path)``: load the value saved in directory (or file) ``path`` by its file name."""

    def __call__(self, path: str) -> Any:  # type: ignore[override]
        """Load the value that ``resource_save`` wrote."""
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.startswith(VALUE_STEM + "."))
            if not names:
                raise MarshalError(f"no saved value in {path}")
            path = os.path.join(path, names[0])
        return self.dispatch(path)(path)


resource_save = ResourceSaver("resource_save")
resource_load = ResourceLoader("resource_load")


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
        with open(path, "wb") as fh:
            dill.dump(obj, fh, protocol=5, recurse=True)
        return path


resource_save.default = _save_pickle


@resource_load.register(r".*\.pkl")
def _load_pickle(path: str) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


@resource_load.register(r".*\.dill")
def _load_dill(path: str) -> Any:
    import dill

    with open(path, "rb") as fh:
        return dill.load(fh)


@resource_save.register_lazy("numpy")
def _register_numpy() -> None:
    import numpy

    @resource_save.register(numpy.ndarray)
    def _save_array(obj: Any, stem: str) -> str:
        if obj.dtype.hasobject or type(obj) is not numpy.ndarray:
            return _save_pickle(obj, stem)
        with open(stem + ".npy", "wb") as fh:
            numpy.save(fh, obj, allow_pickle=False)
        return stem + ".npy"


@resource_save.register_lazy("pandas")
def _register_pandas() -> None:
    import pandas

    @resource_save.register((pandas.DataFrame, pandas.Series))
    def _save_frame(obj: Any, stem: str) -> str:
        path = stem + ".pandas.pkl"
        obj.to_pickle(path, protocol=5)
        return path


# Loaders are looked up newest first: more specific file names are registered last.
@resource_load.register(r".*\.npy")
def _load_array(path: str) -> Any:
    import numpy

    return numpy.load(path, allow_pickle=False)


@resource_load.register(r".*\.pandas\.pkl")
def _load_frame(path: str) -> Any:
    import pandas

    return pandas.read_pickle(path)


def format_of(path: str) -> str:
    """Return the format recorded by a saved file's name (``npy``, ``pandas.pkl``, ...)."""
    return os.path.basename(path).partition(".")[2]
