"""Scope analysis: the names a block of cells reads, binds and changes in place, from pyflakes' bindings."""

from __future__ import annotations

import ast
import functools
import textwrap
from dataclasses import dataclass, field

from pyflakes import checker, messages

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
#: Functions that shuffle or fill their first argument in place.
MUTATING_FUNCTIONS = frozenset({"shuffle", "copyto", "place", "putmask", "fill_diagonal"})

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
        self._top: ast.stmt | None = None
        super().__init__(tree, builtins=set(NOTEBOOK_BUILTINS))

    def handleNode(self, node, parent):  # noqa: N802 (pyflakes' naming)
        if node is not None:
            if self.nodeDepth == 0:
                self._top = node
            note = _NOTES.get(node.__class__)
            if note is not None:
                note(self, node)
        super().handleNode(node, parent)

    def deferFunction(self, callable):  # noqa: N802 (pyflakes' naming)
        top = self._top

        def run():
            saved, self._top = self._top, top
            try:
                callable()
            finally:
                self._top = saved

        super().deferFunction(run)

    def report(self, messageClass, *args, **kwargs):  # noqa: N803 (pyflakes' naming)
        if messageClass in (messages.UndefinedName, messages.ImportStarUsage) and self._top is not None:
            self.read_in.setdefault(args[1], self._top)
        super().report(messageClass, *args, **kwargs)


def _note_targets(checker_: _Checker, node: ast.Assign | ast.Delete) -> None:
    for target in node.targets:
        checker_.mutated.update(_store_roots(target))


def _note_target(checker_: _Checker, node: ast.AugAssign | ast.AnnAssign) -> None:
    checker_.mutated.update(_store_roots(node.target))


def _note_call(checker_: _Checker, node: ast.Call) -> None:
    checker_.mutated.update(_call_roots(node))


def _note_import(checker_: _Checker, node: ast.Import) -> None:
    checker_.modules.update(alias.name for alias in node.names)


def _note_import_from(checker_: _Checker, node: ast.ImportFrom) -> None:
    if node.module and not node.level:
        checker_.modules.add(node.module)


def _note_definition(checker_: _Checker, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
    if checker_._top is not None:
        checker_.definition_tops[id(node)] = checker_._top


#: What the checker notes, by node type, as it walks the tree.
_NOTES = {ast.Assign: _note_targets, ast.Delete: _note_targets, ast.AugAssign: _note_target,
          ast.AnnAssign: _note_target, ast.Call: _note_call, ast.Import: _note_import,
          ast.ImportFrom: _note_import_from, ast.FunctionDef: _note_definition,
          ast.AsyncFunctionDef: _note_definition, ast.ClassDef: _note_definition}


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
    symbols = Symbols(reads=reads, mutated=result.mutated, modules=result.modules)
    for name in reads:
        statement = result.read_in.get(name)
        parsed = cell_of.get(id(statement)) if statement is not None else None
        if parsed is not None:
            symbols.read_cells[name] = parsed.cell["index"]
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
