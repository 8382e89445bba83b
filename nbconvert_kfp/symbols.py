"""Symbols of a block of code: the names it reads, binds and mutates, from pyflakes."""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass, field

from pyflakes import checker, messages

from .cellsource import analysis_source

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


@dataclass
class Definition:
    """A function or class defined at the top level of a block."""

    name: str
    source: str
    free_names: frozenset[str]
    is_class: bool = False


@dataclass
class Symbols:
    """What one block of code reads from outside, binds, and may change in place."""

    reads: list[str] = field(default_factory=list)
    data: set[str] = field(default_factory=set)
    imports: dict[str, str] = field(default_factory=dict)
    definitions: dict[str, Definition] = field(default_factory=dict)
    mutated: set[str] = field(default_factory=set)

    @property
    def bound(self) -> set[str]:
        """Every name the block leaves bound at top level."""
        return self.data | set(self.imports) | set(self.definitions)


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _mutated_names(tree: ast.AST) -> set[str]:
    """Names whose object the code may change without rebinding the name."""
    names: set[str] = set()
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, (ast.Attribute, ast.Subscript)) and isinstance(part.ctx, (ast.Store, ast.Del)):
                    root = _root_name(part)
                    if root:
                        names.add(root)
        if isinstance(node, ast.Call):
            func = node.func
            inplace = any(k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
                          for k in node.keywords)
            if isinstance(func, ast.Attribute):
                method = func.attr
                in_place_method = method in MUTATING_METHODS or (
                    method.endswith("_") and not method.startswith("_"))
                if inplace or in_place_method:
                    root = _root_name(func.value)
                    if root:
                        names.add(root)
            function_name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if function_name in MUTATING_FUNCTIONS and node.args:
                root = _root_name(node.args[0])
                if root:
                    names.add(root)
    return names


def _undefined(result: checker.Checker) -> list[str]:
    names: list[str] = []
    for message in result.messages:
        if isinstance(message, (messages.UndefinedName, messages.ImportStarUsage)):
            name = message.message_args[0]
            if name not in names:
                names.append(name)
    return names


def _check(tree: ast.AST) -> checker.Checker:
    return checker.Checker(tree, builtins=set(NOTEBOOK_BUILTINS))


def _definition_source(lines: list[str], node: ast.AST) -> str:
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return textwrap.dedent("\n".join(lines[first - 1:node.end_lineno])) + "\n"


def free_names(source: str) -> frozenset[str]:
    """Names a piece of code reads that it does not bind itself (nor builtins)."""
    return frozenset(_undefined(_check(ast.parse(source))))


def analyse(source: str) -> Symbols:
    """Analyse a block of module-level code (already plain Python).

    Raises ``SyntaxError`` when the block does not parse.
    """
    code = analysis_source(source)
    tree = ast.parse(code)
    result = _check(tree)
    symbols = Symbols(reads=_undefined(result), mutated=_mutated_names(tree))
    module = next(s for s in result.deadScopes if isinstance(s, checker.ModuleScope))
    lines = code.splitlines()
    for name, binding in module.items():
        if isinstance(binding, (checker.Builtin, checker.StarImportation, checker.FutureImportation)):
            continue
        if isinstance(binding, checker.Importation):
            symbols.imports[name] = binding.source_statement
        elif isinstance(binding, (checker.FunctionDefinition, checker.ClassDefinition)):
            text = _definition_source(lines, binding.source)
            symbols.definitions[name] = Definition(name, text, free_names(text) - {name},
                                                   isinstance(binding, checker.ClassDefinition))
        elif isinstance(binding, _DATA_BINDINGS) or type(binding) is checker.Binding:
            symbols.data.add(name)
    star_imports = [b.source_statement for b in module.values() if isinstance(b, checker.StarImportation)]
    for index, statement in enumerate(star_imports):
        symbols.imports[f"*{index}"] = statement
    return symbols
