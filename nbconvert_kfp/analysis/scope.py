"""Scope analysis: the names a block of cells reads, binds and changes in place, from pyflakes' bindings."""

from __future__ import annotations

import ast
import functools
import textwrap
from dataclasses import dataclass, field

from pyflakes import checker, messages

from . import lazydependency
from .lazydependency import LazyDependency
from .parsedcell import ParsedCell, imported_modules, module

#: Names that IPython puts in every notebook namespace.
NOTEBOOK_BUILTINS = frozenset({"display", "get_ipython", "In", "Out", "exit", "quit"})

#: Methods that change the object they are called on (lists, dicts, sets, estimators, tensors).
MUTATING_METHODS = frozenset({
    "append", "extend", "insert", "remove", "pop", "popitem", "clear", "sort", "reverse",
    "update", "setdefault", "add", "discard", "difference_update", "intersection_update",
    "symmetric_difference_update", "fill", "resize", "put", "itemset", "setflags", "partition",
    "fit", "partial_fit", "fit_transform", "fit_predict", "set_params", "set_output",
    "compile", "train", "eval", "load_state_dict", "step", "zero_grad", "seek", "write",
    "__setitem__", "__delitem__",
})
#: Functions (or methods: ``rng.shuffle(a)``) that change their first argument in place.
MUTATING_FUNCTIONS = frozenset({
    "shuffle", "copyto", "place", "putmask", "fill_diagonal", "put_along_axis",  # numpy, random
    "heappush", "heappop", "heapify", "heapreplace", "heappushpop",  # heapq
    "insort", "insort_left", "insort_right",  # bisect
})
#: Calls that write a file named by a string: method -> (position, keyword) of the path argument.
FILE_WRITERS = {name: (0, "path_or_buf") for name in (
    "to_csv", "to_parquet", "to_json", "to_pickle", "to_excel", "to_feather", "to_hdf", "to_stata", "to_html",
    "to_xml", "to_orc", "to_netcdf", "savefig", "save", "savez", "savez_compressed", "savetxt", "imwrite",
    "imsave", "dump_model", "save_model")}
#: Calls that read a file named by a string.
FILE_READERS = {name: (0, "filepath_or_buffer") for name in (
    "read_csv", "read_parquet", "read_json", "read_pickle", "read_excel", "read_feather", "read_hdf", "read_table",
    "read_stata", "read_html", "read_xml", "read_orc", "read_fwf", "load", "loadtxt", "genfromtxt", "fromfile",
    "imread", "load_model", "read_file")}
#: ``Path(...)`` methods that write or read the file the path names.
PATH_WRITERS = frozenset({"write_text", "write_bytes", "touch"})
PATH_READERS = frozenset({"read_text", "read_bytes"})

_DATA_BINDINGS = (checker.Assignment, checker.NamedExprAssignment)


class Definition:
    """A function or class defined at the top level of a block: its source, the names it reads
    from outside, and the modules it imports (each worked out when first asked for: most
    definitions are never re-run in another step)."""

    def __init__(self, name: str, node: ast.AST, parsed: ParsedCell, is_class: bool = False):
        self.name = name
        self.is_class = is_class
        self._node = node
        self._parsed = parsed

    @functools.cached_property
    def source(self) -> str:
        """The definition's source (decorators included), dedented, from its cell's lines."""
        node = self._node
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return textwrap.dedent("\n".join(self._parsed.lines[first - 1:node.end_lineno])) + "\n"

    @functools.cached_property
    def free_names(self) -> frozenset[str]:
        """The names the definition reads that it does not bind itself (nor builtins)."""
        check = checker.Checker(ast.Module([self._node], []), builtins=set(NOTEBOOK_BUILTINS))
        return frozenset(_undefined(check)) - {self.name}

    @functools.cached_property
    def modules(self) -> frozenset[str]:
        """The modules the definition imports."""
        return frozenset(imported_modules(self._node))

    @functools.cached_property
    def lazy(self) -> frozenset[LazyDependency]:
        """The lazy dependencies the definition's code uses (``df.plot()``)."""
        return frozenset(lazydependency.found_in(self._node))

    @property
    def cell(self) -> int:
        """The index of the cell that defines it."""
        return self._parsed.cell["index"]


@dataclass
class Symbols:
    """What one block of code reads from outside, binds, and may change in place."""

    reads: list[str] = field(default_factory=list)
    #: the index of the first cell that reads each read name
    read_cells: dict[str, int] = field(default_factory=dict)
    data: set[str] = field(default_factory=set)
    #: name bound by an import -> the import statement
    imports: dict[str, str] = field(default_factory=dict)
    #: name bound by an import -> the top-level module it comes from
    import_modules: dict[str, str] = field(default_factory=dict)
    definitions: dict[str, Definition] = field(default_factory=dict)
    mutated: set[str] = field(default_factory=set)
    #: the modules the code imports anywhere (inside functions too), as imported (``sklearn.ensemble``)
    modules: set[str] = field(default_factory=set)
    #: names of builtins the code reads before binding them (``id``, ``input``): reads of another step's
    #: variable where one binds that name -> the index of the first cell reading it
    builtin_reads: dict[str, int] = field(default_factory=dict)
    #: files the code writes and reads by a literal path -> the index of the first cell doing so
    files_written: dict[str, int] = field(default_factory=dict)
    files_read: dict[str, int] = field(default_factory=dict)
    #: lazy dependencies the code uses (``df.plot()`` needs matplotlib) -> the index of the first cell using each
    lazy: dict[LazyDependency, int] = field(default_factory=dict)

    @property
    def bound(self) -> set[str]:
        """Every name the block leaves bound at top level."""
        return self.data | set(self.imports) | set(self.definitions)


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _store_roots(target: ast.AST) -> list[str]:
    """Names whose object an assignment or deletion target changes (``a.b = ...``, ``a[i] = ...``)."""
    if isinstance(target, ast.Name):
        return []
    roots = []
    for part in ast.walk(target):
        if isinstance(part, (ast.Attribute, ast.Subscript)) and isinstance(part.ctx, (ast.Store, ast.Del)):
            root = _root_name(part)
            if root:
                roots.append(root)
    return roots


def _call_roots(node: ast.Call) -> list[str]:
    """Names whose object a call may change in place: ``x.append(...)``, ``x.fit(...)``, ``f(..., inplace=True)``
    on a method, ``shuffle(x)``."""
    roots = []
    func = node.func
    if isinstance(func, ast.Attribute):
        method = func.attr
        inplace = any(k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
                      for k in node.keywords)
        if inplace or method in MUTATING_METHODS or (method.endswith("_") and not method.startswith("_")):
            roots.append(_root_name(func.value))
    function_name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if function_name in MUTATING_FUNCTIONS and node.args:
        roots.append(_root_name(node.args[0]))
    return [root for root in roots if root]


class _Checker(checker.Checker):
    """pyflakes' checker that also notes, in the same traversal, what the code changes in place, what it
    imports, the top-level statement each undefined name is first read in and the one each definition
    is part of."""

    def __init__(self, tree: ast.Module):
        self.mutated: set[str] = set()
        self.modules: set[str] = set()
        self.read_in: dict[str, ast.stmt] = {}
        self.definition_tops: dict[int, ast.stmt] = {}
        #: name -> the names whose objects it may refer to (``b = a``, ``for d in [a, c]``)
        self.aliases: dict[str, set[str]] = {}
        self.builtin_reads: dict[str, ast.stmt] = {}
        self.files: dict[str, dict[str, ast.stmt]] = {"written": {}, "read": {}}
        self.lazy: dict[LazyDependency, ast.stmt] = {}
        self._top: ast.stmt | None = None
        #: a function body runs deferred, at node depth 0: its statements are not top-level ones
        self._in_deferred = False
        super().__init__(tree, builtins=set(NOTEBOOK_BUILTINS))

    def handleNodeLoad(self, node, *parent):  # noqa: N802 (pyflakes' naming; 3.0 passes no parent)
        name = getattr(node, "id", None)
        if name is not None and self._top is not None:
            binding = next((scope[name] for scope in reversed(self.scopeStack) if name in scope), None)
            if isinstance(binding, checker.Builtin) and name not in NOTEBOOK_BUILTINS:
                self.builtin_reads.setdefault(name, self._top)
        super().handleNodeLoad(node, *parent)

    def alias_closure(self) -> set[str]:
        """The mutated names, with every name a mutated name may refer to."""
        mutated, pending = set(self.mutated), list(self.mutated)
        while pending:
            for origin in self.aliases.get(pending.pop(), ()):
                if origin not in mutated:
                    mutated.add(origin)
                    pending.append(origin)
        return mutated

    def handleNode(self, node, parent):  # noqa: N802 (pyflakes' naming)
        if node is not None:
            if self.nodeDepth == 0 and not self._in_deferred:
                self._top = node
            note = _NOTES.get(node.__class__)
            if note is not None:
                note(self, node)
        super().handleNode(node, parent)

    def deferFunction(self, callable):  # noqa: N802 (pyflakes' naming)
        top = self._top

        def run():
            saved, self._top, self._in_deferred = self._top, top, True
            try:
                callable()
            finally:
                self._top, self._in_deferred = saved, False

        super().deferFunction(run)

    def report(self, messageClass, *args, **kwargs):  # noqa: N803 (pyflakes' naming)
        if messageClass in (messages.UndefinedName, messages.ImportStarUsage) and self._top is not None:
            self.read_in.setdefault(args[1], self._top)
        super().report(messageClass, *args, **kwargs)


def _alias_roots(value: ast.AST) -> set[str]:
    """The names whose objects an expression may be (a view or element of): ``a``, ``a.b``, ``a[i]``,
    and each name of a list or tuple display (``[a, b]``)."""
    if isinstance(value, (ast.List, ast.Tuple, ast.Set)):
        return set().union(*(_alias_roots(element) for element in value.elts))
    if isinstance(value, ast.Dict):  # b = {"x": a}: b["x"] is a's object
        return set().union(*(_alias_roots(element) for element in value.values if element is not None))
    if isinstance(value, (ast.Name, ast.Attribute, ast.Subscript, ast.Starred)):
        root = _root_name(value.value if isinstance(value, ast.Starred) else value)
        return {root} if root else set()
    return set()


def _note_alias(checker_: _Checker, target: ast.AST, value: ast.AST) -> None:
    if isinstance(target, ast.Name):
        roots = _alias_roots(value)
        if roots:
            checker_.aliases.setdefault(target.id, set()).update(roots)
    elif isinstance(target, (ast.Tuple, ast.List)):
        if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
            for sub, item in zip(target.elts, value.elts):
                _note_alias(checker_, sub, item)
        else:
            for sub in target.elts:
                _note_alias(checker_, sub, value)


def _note_targets(checker_: _Checker, node: ast.Assign | ast.Delete) -> None:
    for target in node.targets:
        checker_.mutated.update(_store_roots(target))
        if isinstance(node, ast.Assign):
            _note_alias(checker_, target, node.value)


def _note_for(checker_: _Checker, node: ast.For | ast.AsyncFor) -> None:
    """``for d in [a, b]`` and ``for d in frames``: ``d`` refers to their objects."""
    _note_alias(checker_, node.target, node.iter)


def _note_target(checker_: _Checker, node: ast.AugAssign | ast.AnnAssign) -> None:
    checker_.mutated.update(_store_roots(node.target))


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _path_argument(node: ast.Call, position: int, keyword: str) -> str | None:
    found = [k.value for k in node.keywords if k.arg in (keyword, "path", "fname", "file")]
    return _string(found[0] if found else node.args[position] if len(node.args) > position else None)


def _note_lazy(checker_: _Checker, node: ast.Attribute | ast.Call | ast.Import | ast.ImportFrom) -> None:
    """A use of a library that imports a distribution only when called (``df.plot()``: matplotlib)."""
    if checker_._top is not None:
        for entry in lazydependency.matches(node):
            checker_.lazy.setdefault(entry, checker_._top)


def _note_call(checker_: _Checker, node: ast.Call) -> None:
    _note_lazy(checker_, node)
    checker_.mutated.update(_call_roots(node))
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name == "run_line_magic" and len(node.args) >= 2 and _string(node.args[0]) == "load_ext":
        # %load_ext line_profiler imports the extension's module: the step needs its distribution
        checker_.modules.update(word for word in (_string(node.args[1]) or "").split()
                                if all(part.isidentifier() for part in word.split(".")))
    path = kind = None
    if name == "open":
        path = _string(node.args[0]) if node.args else None
        mode = _string(node.args[1]) if len(node.args) > 1 else _string(
            next((k.value for k in node.keywords if k.arg == "mode"), None))
        kind = "written" if mode and set(mode) & set("wax+") else "read"
    elif name in FILE_WRITERS or name in FILE_READERS:
        kind = "written" if name in FILE_WRITERS else "read"
        path = _path_argument(node, *(FILE_WRITERS.get(name) or FILE_READERS[name]))
    elif name in PATH_WRITERS | PATH_READERS and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call):
        receiver = func.value  # Path("x").read_text()
        path = _string(receiver.args[0]) if receiver.args else None
        kind = "written" if name in PATH_WRITERS else "read"
    if path and kind and checker_._top is not None:
        checker_.files[kind].setdefault(path, checker_._top)


def _note_import(checker_: _Checker, node: ast.Import) -> None:
    _note_lazy(checker_, node)
    checker_.modules.update(alias.name for alias in node.names)


def _note_import_from(checker_: _Checker, node: ast.ImportFrom) -> None:
    _note_lazy(checker_, node)
    if node.module and not node.level:
        checker_.modules.add(node.module)


def _note_definition(checker_: _Checker, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
    if checker_._top is not None:
        checker_.definition_tops[id(node)] = checker_._top


#: What the checker notes, by node type, as it walks the tree.
_NOTES = {ast.Assign: _note_targets, ast.Delete: _note_targets, ast.AugAssign: _note_target,
          ast.For: _note_for, ast.AsyncFor: _note_for,
          ast.AnnAssign: _note_target, ast.Call: _note_call, ast.Import: _note_import,
          ast.ImportFrom: _note_import_from, ast.FunctionDef: _note_definition,
          ast.AsyncFunctionDef: _note_definition, ast.ClassDef: _note_definition, ast.Attribute: _note_lazy}


def _undefined(result: checker.Checker) -> list[str]:
    """Names read but not bound, in reading order."""
    names: dict[str, None] = {}
    for message in result.messages:
        if isinstance(message, (messages.UndefinedName, messages.ImportStarUsage)):
            names.setdefault(message.message_args[0], None)
    return list(names)


def _module_of(binding: checker.Importation) -> str:
    return binding.fullName.partition(".")[0]


def analyse(cells: list[ParsedCell]) -> Symbols:
    """Analyse the cells as one block of module-level code; each cell's tree was parsed once."""
    cell_of = {id(statement): parsed for parsed in cells for statement in parsed.tree.body}
    result = _Checker(module(cells))
    reads = _undefined(result)
    symbols = Symbols(reads=reads, mutated=result.alias_closure(), modules=result.modules)

    def cell(statement: ast.stmt | None) -> int | None:
        parsed = cell_of.get(id(statement)) if statement is not None else None
        return parsed.cell["index"] if parsed is not None else None

    symbols.read_cells = {name: index for name in reads if (index := cell(result.read_in.get(name))) is not None}
    symbols.builtin_reads = {name: index for name, top in result.builtin_reads.items()
                             if (index := cell(top)) is not None}
    symbols.files_written = {path: index for path, top in result.files["written"].items()
                             if (index := cell(top)) is not None}
    symbols.files_read = {path: index for path, top in result.files["read"].items()
                          if (index := cell(top)) is not None}
    symbols.lazy = {entry: index for entry, top in result.lazy.items() if (index := cell(top)) is not None}
    scope = next(s for s in result.deadScopes if isinstance(s, checker.ModuleScope))
    for name, binding in scope.items():
        if isinstance(binding, (checker.Builtin, checker.StarImportation, checker.FutureImportation)):
            continue
        if isinstance(binding, checker.Importation):
            symbols.imports[name] = binding.source_statement
            symbols.import_modules[name] = _module_of(binding)
        elif isinstance(binding, (checker.FunctionDefinition, checker.ClassDefinition)):
            node = binding.source
            parsed = cell_of[id(result.definition_tops[id(node)])]
            symbols.definitions[name] = Definition(name, node, parsed, isinstance(binding, checker.ClassDefinition))
        elif isinstance(binding, _DATA_BINDINGS) or type(binding) is checker.Binding:
            symbols.data.add(name)
    star_imports = [b for b in scope.values() if isinstance(b, checker.StarImportation)]
    for index, binding in enumerate(star_imports):
        symbols.imports[f"*{index}"] = binding.source_statement
        symbols.import_modules[f"*{index}"] = _module_of(binding)
    return symbols
