"""Artifact types by value, decided when the notebook is converted.

KFP artifact types are static in the compiled pipeline, so the type of each
variable's artifact is guessed from the code that assigns it, before anything runs:

- ``Dataset`` for data: pandas, numpy, scipy.sparse, torch tensors, images, the
  splits of ``train_test_split``, ``load_iris(return_X_y=True)``, predictions;
- ``Model`` for models: scikit-learn estimators and pipelines, xgboost, lightgbm,
  torch ``nn.Module``s, Keras models, statsmodels results, classes defined in the
  step that derive from one of these, and anything whose ``.fit(...)`` is called;
- ``Artifact`` otherwise.

``unsaveable_values`` finds variables bound to values that can never travel to
another step (open files, generators, sockets, locks, database connections, Spark
objects), so the conversion can warn before the pipeline runs.

Only the standard library is used: nothing is imported from the notebook.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

from .parsedcell import record_import, top_level_statements

DATASET = "Dataset"
MODEL = "Model"
ARTIFACT = "Artifact"


def _rules(*pairs: tuple[str, str]) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(pattern), value) for pattern, value in pairs]


#: Callables by fully qualified name: what their result is. The first match wins.
CALL_KINDS = _rules(
    # --- data
    (r"pandas\.(read_\w+|DataFrame|Series|concat|merge\w*|get_dummies|pivot\w*|crosstab|melt|"
     r"wide_to_long|json_normalize|to_datetime|to_numeric|to_timedelta|\w*date_range|period_range|"
     r"interval_range|cut|qcut|Categorical|Index|MultiIndex\.\w+|array)", DATASET),
    (r"numpy\.random\.(default_rng|RandomState|Generator|SeedSequence|PCG64\w*|MT19937|Philox|SFC64|seed)",
     ARTIFACT),
    (r"numpy\.(dtype|vectorize|frompyfunc|errstate|printoptions|set_printoptions|seterr|finfo|iinfo|"
     r"nditer|ndenumerate|ndindex|broadcast|poly1d|save\w*|savetxt)", ARTIFACT),
    (r"numpy\.[\w.()]+", DATASET),
    (r"scipy\.sparse\.(linalg|csgraph)\.[\w.]+", ARTIFACT),
    (r"scipy\.sparse\.(save_npz|issparse|isspmatrix\w*)", ARTIFACT),
    (r"scipy\.sparse\.\w+", DATASET),
    (r"scipy\.io\.(loadmat|mmread)", DATASET),
    (r"sklearn\.datasets\.\w+", DATASET),
    (r"sklearn\.model_selection\.(train_test_split|cross_val_score|cross_val_predict|learning_curve|"
     r"validation_curve)", DATASET),
    (r"torch\.utils\.data\.(TensorDataset|random_split|Subset|ConcatDataset)", DATASET),
    (r"torch\.nn\.functional\.\w+", DATASET),
    (r"torch\.nn\.[\w.]*[A-Z]\w*", MODEL),
    (r"torch\.(jit\.(script|trace|load)|compile)", MODEL),
    (r"torch\.(nn|optim|jit|utils|cuda|backends|distributed|distributions|autograd|profiler)\.[\w.]+", None),
    (r"torch\.(load|save|device|manual_seed|no_grad|enable_grad|inference_mode|Generator|"
     r"set_\w+|get_\w+|is_\w+|use_deterministic_algorithms)", None),
    (r"torch\.\w+", DATASET),
    (r"xgboost\.(DMatrix|QuantileDMatrix|cv)", DATASET),
    (r"lightgbm\.Dataset", DATASET),
    (r"catboost\.Pool", DATASET),
    (r"PIL\.Image\.(open|new|fromarray|frombytes|frombuffer|merge|composite|blend)", DATASET),
    (r"polars\.(read_\w+|scan_\w+|DataFrame|Series|LazyFrame|concat|from_\w+)", DATASET),
    (r"pyarrow\.(table|array|chunked_array|record_batch|Table\.\w+|RecordBatch\.\w+|parquet\.read_table|"
     r"csv\.read_csv|feather\.read_\w+)", DATASET),
    (r"datasets\.(load_dataset|load_from_disk|Dataset\.\w+)", DATASET),
    (r"dask\.(dataframe|array)\.[\w.]+", DATASET),
    (r"tensorflow\.(constant|Variable|convert_to_tensor|zeros|ones|fill|range|random\.\w+)", DATASET),
    # --- models
    (r"sklearn\.(pipeline\.(make_pipeline|make_union)|compose\.make_column_transformer|base\.clone)", MODEL),
    (r"sklearn\.model_selection\.\w*Search\w*", MODEL),
    (r"sklearn\.(model_selection|metrics|utils|inspection|exceptions|datasets)\.[\w.]+", None),
    (r"sklearn\.[\w.]*\.[A-Z]\w*", MODEL),
    (r"xgboost\.(train|Booster|XGB\w+|sklearn\.XGB\w+|dask\.\w+)", MODEL),
    (r"lightgbm\.(train|Booster|LGBM\w+|sklearn\.LGBM\w+)", MODEL),
    (r"catboost\.CatBoost\w*", MODEL),
    (r"torchvision\.models\.[\w.]+", MODEL),
    (r"(keras|tf_keras|tensorflow\.keras)\.(Sequential|Model|models\.\w+|applications\.[\w.]+|"
     r"saving\.load_model|layers\.[A-Z]\w*)", MODEL),
    (r"tensorflow\.saved_model\.load", MODEL),
    (r"statsmodels\.formula\.api\.\w+", MODEL),
    (r"statsmodels\.[\w.]*\.[A-Z]\w*", MODEL),
    (r"transformers\.(pipeline|\w+\.from_pretrained)", MODEL),
)

#: Classes that a model class defined in the notebook derives from.
MODEL_BASES = re.compile(
    r"torch\.nn\.(modules\.[\w.]+\.)?(Module|Sequential)|(keras|tf_keras|tensorflow\.keras)\.(Model|Sequential|"
    r"models\.\w+|layers\.Layer)|sklearn\.base\.\w+|(pytorch_)?lightning\.[\w.]*Module|tensorflow\.Module")
DATASET_BASES = re.compile(r"torch\.utils\.data\.(Dataset|IterableDataset)|pandas\.(DataFrame|Series)")

#: Callables whose result is bound to the process that made it, with the reason.
_FILE = "an open file belongs to the process that opened it"
_CONNECTION = "a network connection belongs to the process that opened it"
_DATABASE = "a database connection belongs to the process that opened it"
_LOCK = "a lock, thread or worker pool belongs to the process that created it"
_SPARK = "a Spark object lives in the Spark session of the step that made it"
UNSAVEABLE_CALLS = _rules(
    (r"(builtins\.)?open|io\.(open|FileIO|open_code)|codecs\.open|(gzip|bz2|lzma)\.open|tarfile\.open|"
     r"zipfile\.ZipFile|tempfile\.(TemporaryFile|NamedTemporaryFile|SpooledTemporaryFile)|os\.fdopen|"
     r"fileinput\.input|h5py\.File|pathlib\.\w*Path\(\)\.open|urllib\.request\.urlopen", _FILE),
    (r"socket\.(socket|create_connection|create_server|socketpair|fromfd)|ssl\.\w+\.wrap_socket|"
     r"http\.client\.HTTPS?Connection|ftplib\.FTP\w*|smtplib\.SMTP\w*|telnetlib\.Telnet", _CONNECTION),
    (r"sqlite3\.connect|psycopg2?\.connect|pymysql\.connect|MySQLdb\.connect|mysql\.connector\.connect|"
     r"pyodbc\.connect|duckdb\.connect|cx_Oracle\.connect|oracledb\.connect|sqlalchemy\.create_engine|"
     r"pymongo\.MongoClient|redis\.\w*Redis|snowflake\.connector\.connect", _DATABASE),
    (r"(threading|multiprocessing)\.(Lock|RLock|Condition|Semaphore|BoundedSemaphore|Event|Barrier|Thread|"
     r"Timer|Process|Pool|Queue|JoinableQueue|SimpleQueue|Manager|Pipe)|asyncio\.(Lock|Event|Condition|"
     r"Semaphore|Queue)|concurrent\.futures\.\w+Executor|multiprocessing\.pool\.\w*Pool|subprocess\.Popen|"
     r"mmap\.mmap", _LOCK),
    (r"xgboost\.QuantileDMatrix",
     "XGBoost can save only a plain DMatrix, not a QuantileDMatrix"),
    (r"(pyspark|py4j)\.[\w.()]+", _SPARK),
)
_SPARK_LOCAL = re.compile(r"(pyspark|py4j)\.sql\.(types|Row)\b.*|.*\.(collect|take|head|first|count|tail|show|"
                          r"printSchema|columns|dtypes|schema|isEmpty|toJSON)\(\)")

#: Methods of a model whose result is a model (``fit`` returns the estimator itself).
MODEL_METHODS = {"fit", "partial_fit", "set_params", "to", "cpu", "cuda", "eval", "train", "double", "float",
                 "half", "bfloat16", "requires_grad_", "set_output", "compile"}
#: Methods of a model whose result is data.
MODEL_DATA_METHODS = {"predict", "predict_proba", "predict_log_proba", "decision_function", "transform",
                      "fit_transform", "inverse_transform", "fit_predict", "score_samples", "kneighbors",
                      "apply", "forward", "__call__", "get_booster"}
#: Methods of data whose result is a plain Python value rather than data.
DATA_PLAIN_METHODS = {"tolist", "to_list", "to_dict", "item", "to_csv", "to_json", "to_parquet", "to_pickle",
                      "to_excel", "to_sql", "plot", "hist", "boxplot", "info", "save", "tofile", "dump"}
#: Methods of an unsaveable value whose result can be saved (what was read, fetched, collected).
_LOCAL_METHODS = re.compile(r"read\w*|fetch\w*|recv\w*|get\w*|collect|take|head|first|count|tail|toPandas|"
                            r"to_pandas|tell|fileno|seek|write\w*|acquire|locked|is_set|is_alive|join|submit|"
                            r"result|apply\w*|map\w*|imap\w*|starmap\w*|communicate|wait|poll")


@dataclass(frozen=True)
class _Value:
    """What the analysis knows about a value: its kind, where it came from, why it cannot be saved."""

    kind: str = ARTIFACT
    origin: str | None = None
    unsaveable: str | None = None


_UNKNOWN = _Value()


def imports_of(source: str) -> dict[str, str]:
    """Map each name bound by the top-level import statements of ``source`` to what it imports.

    ``import numpy as np`` gives ``{"np": "numpy"}``; ``from sklearn.ensemble import
    RandomForestClassifier`` gives ``{"RandomForestClassifier":
    "sklearn.ensemble.RandomForestClassifier"}``; ``import os.path`` gives ``{"os": "os"}``.
    A source that does not parse gives ``{}``.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    imports: dict[str, str] = {}
    for node in top_level_statements(tree.body):
        record_import(node, imports)
    return imports


def infer_artifact_types(source: str, imports: Mapping[str, str] | None = None,
                         inputs: Mapping[str, str] | None = None) -> dict[str, str]:
    """Guess the KFP artifact type of every top-level variable that ``source`` assigns.

    ``source`` is a step's Python code (cells joined, IPython syntax already
    translated). ``imports`` maps the names that the step's and the prelude's
    import statements bind to the fully qualified module or object they import,
    e.g. ``{"pd": "pandas", "RandomForestClassifier":
    "sklearn.ensemble.RandomForestClassifier"}``; imports in ``source`` itself are
    added to it. Returns ``{variable: "Dataset" | "Model" | "Artifact"}`` for each
    variable bound at the top level of ``source`` (assignments, ``for`` and
    ``with`` targets, including inside ``if``/``for``/``with``/``try`` blocks);
    imported names, functions and classes are not included. The last binding in
    source order decides, and a later ``var.fit(...)`` makes a variable of unknown
    kind a ``Model``. ``inputs`` optionally gives the kinds of the variables the
    step loads from upstream steps (``{"df": "Dataset"}``), so that ``df2 =
    df.dropna()`` is a ``Dataset`` too; they are not part of the result unless
    ``source`` assigns them. A source that does not parse gives ``{}``.
    """
    values = _analyse(source, imports, inputs)
    return {name: value.kind for name, value in values.items()}


def unsaveable_values(source: str, imports: Mapping[str, str] | None = None,
                      inputs: Mapping[str, str] | None = None) -> dict[str, str]:
    """Find the top-level variables of ``source`` bound to values that cannot be saved to an artifact.

    Arguments are as for ``infer_artifact_types``. Returns ``{variable: reason}``
    for variables bound to: a file handle (``open(...)``, ``with open(...) as fh``,
    ``gzip.open``, ...), a generator (a generator expression, or a call of a
    generator function that ``source`` defines), a socket, a lock, thread or
    worker pool, a database connection or cursor (``sqlite3.connect``, ...), a
    Spark session or DataFrame, or an xgboost ``QuantileDMatrix``. The reason is a
    sentence fragment such as ``"an open file belongs to the process that opened
    it"``. Values read from such objects (``fh.read()``, ``cursor.fetchall()``,
    ``sdf.toPandas()``, ``sdf.collect()``) are not reported.
    """
    values = _analyse(source, imports, inputs)
    return {name: value.unsaveable for name, value in values.items() if value.unsaveable}


# --- the analysis -------------------------------------------------------------------------------


def _is_generator_function(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    todo: list[ast.AST] = list(node.body)
    while todo:
        child = todo.pop()
        if isinstance(child, (ast.Yield, ast.YieldFrom)):
            return True
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        todo.extend(ast.iter_child_nodes(child))
    return False


@lru_cache(maxsize=4096)
def _call_rule(qualified: str) -> tuple[str | None, str | None]:
    """(kind, reason it cannot be saved) for the result of calling ``qualified``."""
    for pattern, reason in UNSAVEABLE_CALLS:
        if pattern.fullmatch(qualified):
            if reason == _SPARK and _SPARK_LOCAL.fullmatch(qualified + "()"):
                break
            return ARTIFACT, reason
    for pattern, kind in CALL_KINDS:
        if pattern.fullmatch(qualified):
            return kind or ARTIFACT, None
    return None, None


def _named_expressions(node: ast.stmt) -> list[ast.NamedExpr]:
    """The ``(x := ...)`` expressions a statement evaluates at module level (in its value or test)."""
    root = node.test if isinstance(node, (ast.If, ast.While)) else getattr(node, "value", None)
    if not isinstance(root, ast.AST) or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return []
    return [child for child in ast.walk(root) if isinstance(child, ast.NamedExpr)]


class _Analysis:
    def __init__(self, imports: Mapping[str, str] | None, walrus: bool = True):
        self.walrus = walrus
        self.imports: dict[str, str] = dict(imports or {})
        self.values: dict[str, _Value] = {}
        self.classes: dict[str, str] = {}  # class defined in the source -> kind of its instances
        #: functions defined in the source, by name (whether one is a generator is worked out when called)
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}

    # statements

    def run(self, tree: ast.Module) -> dict[str, _Value]:
        for node in top_level_statements(tree.body):
            self.statement(node)
        return self.values

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            before = set(self.imports)
            record_import(node, self.imports)
            for name in set(self.imports) - before | {a.asname or a.name.partition(".")[0] for a in node.names}:
                self.values.pop(name, None)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.values.pop(node.name, None)
            self.functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            self.values.pop(node.name, None)
            self.classes[node.name] = self._class_kind(node)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                self.bind(target, node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self.bind(node.target, node.value)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            current = self.values.get(node.target.id)
            if current is None or current.kind == ARTIFACT:
                self.values[node.target.id] = self.expr(ast.BinOp(node.target, node.op, node.value))
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.bind_unknown(node.target)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    value = self.expr(item.context_expr)
                    if value.unsaveable == _FILE:
                        value = _Value(ARTIFACT, value.origin, "a file handle opened in a `with` block is "
                                       "closed when the block ends, and " + _FILE)
                    elif not value.unsaveable:
                        value = _Value(ARTIFACT, None)
                    self.bind_value(item.optional_vars, value)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.values.pop(target.id, None)
        elif isinstance(node, ast.Expr):
            self.expression_statement(node.value)
        if self.walrus:
            for child in _named_expressions(node):
                if isinstance(child.target, ast.Name):
                    self.values[child.target.id] = self.expr(child.value)

    def expression_statement(self, node: ast.expr) -> None:
        """``model.fit(X, y)``: a value of unknown kind that is fitted is a model."""
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fit"
                and isinstance(node.func.value, ast.Name) and (node.args or node.keywords)):
            name = node.func.value.id
            current = self.values.get(name)
            if current is not None and current.kind == ARTIFACT and not current.unsaveable:
                self.values[name] = _Value(MODEL, current.origin)

    def bind(self, target: ast.expr, value_node: ast.expr) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            elements = getattr(value_node, "elts", None)
            starred = any(isinstance(t, ast.Starred) for t in target.elts)
            if isinstance(value_node, (ast.Tuple, ast.List)) and not starred and len(elements) == len(target.elts):
                values = [self.expr(element) for element in elements]  # evaluate all before binding
                for sub, value in zip(target.elts, values):
                    self.bind_value(sub, value)
                return
            whole = self.expr(value_node)
            element = _Value(DATASET, None) if whole.kind == DATASET else _UNKNOWN
            for sub in target.elts:
                self.bind_value(sub.value if isinstance(sub, ast.Starred) else sub,
                                _UNKNOWN if isinstance(sub, ast.Starred) else element)
            return
        self.bind_value(target, self.expr(value_node))

    def bind_value(self, target: ast.expr, value: _Value) -> None:
        if isinstance(target, ast.Name):
            self.values[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            for sub in target.elts:
                self.bind_value(sub.value if isinstance(sub, ast.Starred) else sub, _UNKNOWN)
        elif isinstance(target, ast.Starred):
            self.bind_value(target.value, _UNKNOWN)

    def bind_unknown(self, target: ast.expr) -> None:
        self.bind_value(target, _UNKNOWN)

    def _class_kind(self, node: ast.ClassDef) -> str:
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in self.classes:
                if self.classes[base.id] != ARTIFACT:
                    return self.classes[base.id]
                continue
            qualified = self.qualified(base)
            if qualified and MODEL_BASES.fullmatch(qualified):
                return MODEL
            if qualified and DATASET_BASES.fullmatch(qualified):
                return DATASET
        methods = {item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
        return MODEL if {"fit", "predict"} <= methods else ARTIFACT

    # expressions

    def qualified(self, node: ast.expr) -> str | None:
        """The dotted name of ``a.b.c`` with ``a`` resolved through the imports, or None."""
        if isinstance(node, ast.Name):
            return self.imports.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualified(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def expr(self, node: ast.expr) -> _Value:
        if isinstance(node, ast.Name):
            if node.id in self.values:
                return self.values[node.id]
            return _Value(ARTIFACT, self.imports.get(node.id))
        if isinstance(node, ast.GeneratorExp):
            return _Value(ARTIFACT, None, "a generator expression keeps its position in the step that runs it")
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        if isinstance(node, ast.Subscript):
            value = self.expr(node.value)
            return _Value(value.kind if value.kind in (DATASET, MODEL) else ARTIFACT, None)
        if isinstance(node, (ast.BinOp, ast.Compare, ast.BoolOp)):
            operands = ([node.left, node.right] if isinstance(node, ast.BinOp) else
                        [node.left, *node.comparators] if isinstance(node, ast.Compare) else node.values)
            kinds = {self.expr(operand).kind for operand in operands}
            return _Value(DATASET if DATASET in kinds else ARTIFACT, None)
        if isinstance(node, ast.UnaryOp):
            return _Value(DATASET if self.expr(node.operand).kind == DATASET else ARTIFACT)
        if isinstance(node, ast.IfExp):
            body, orelse = self.expr(node.body), self.expr(node.orelse)
            if body.unsaveable or orelse.unsaveable:
                return body if body.unsaveable else orelse
            return _Value(body.kind if body.kind == orelse.kind else ARTIFACT, None)
        if isinstance(node, ast.NamedExpr):
            return self.expr(node.value)
        return _UNKNOWN

    def attribute(self, node: ast.Attribute) -> _Value:
        value = self.expr(node.value)
        origin = f"{value.origin}.{node.attr}" if value.origin else self.qualified(node)
        if value.unsaveable:
            if value.unsaveable == _SPARK and node.attr not in {"columns", "dtypes", "schema"}:
                return _Value(ARTIFACT, origin, _SPARK)
            return _Value(ARTIFACT, origin)
        if value.kind == DATASET:
            plain = node.attr in {"shape", "dtype", "dtypes", "ndim", "size", "name", "nbytes", "itemsize"}
            return _Value(ARTIFACT if plain else DATASET, origin)
        if value.kind == MODEL:
            if node.attr in {"best_estimator_", "estimator", "estimator_", "module", "model", "booster_"}:
                return _Value(MODEL, origin)
            return _Value(DATASET if node.attr.endswith("_") and not node.attr.startswith("_") else ARTIFACT,
                          origin)
        return _Value(ARTIFACT, origin)

    def call(self, node: ast.Call) -> _Value:
        func = node.func
        if isinstance(func, ast.Name):
            defined = self.functions.get(func.id)
            if defined is not None and func.id not in self.values and _is_generator_function(defined):
                return _Value(ARTIFACT, None, f"calling generator function {func.id}() makes a generator, which "
                                              "keeps its position in the step that runs it")
            if func.id in self.classes and func.id not in self.values:
                return _Value(self.classes[func.id], f"__main__.{func.id}()")
            if func.id in self.values:  # model(x): a forward pass gives data
                return _Value(DATASET if self.values[func.id].kind == MODEL else ARTIFACT, None)
            qualified = self.imports.get(func.id, func.id)
            kind, reason = _call_rule(qualified)
            return _Value(kind or ARTIFACT, f"{qualified}()", reason)
        if isinstance(func, ast.Attribute):
            receiver = self.expr(func.value)
            method = func.attr
            qualified = f"{receiver.origin}.{method}" if receiver.origin else self.qualified(func)
            origin = f"{qualified}()" if qualified else None
            if receiver.unsaveable:
                if receiver.unsaveable == _SPARK:
                    if method in {"toPandas", "to_pandas_on_spark", "pandas_api"}:
                        return _Value(DATASET, origin)
                    if _SPARK_LOCAL.fullmatch(f"x.{method}()"):
                        return _Value(ARTIFACT, origin)
                    return _Value(ARTIFACT, origin, _SPARK)
                if _LOCAL_METHODS.fullmatch(method) or method in {"__exit__", "close"}:
                    return _Value(ARTIFACT, origin)
                return _Value(ARTIFACT, origin, receiver.unsaveable)
            if receiver.kind == MODEL:
                if method in MODEL_METHODS:
                    return _Value(MODEL, origin)
                return _Value(DATASET if method in MODEL_DATA_METHODS else ARTIFACT, origin)
            if receiver.kind == DATASET:
                return _Value(ARTIFACT if method in DATA_PLAIN_METHODS else DATASET, origin)
            if qualified:
                kind, reason = _call_rule(qualified)
                if kind is not None:
                    return _Value(kind, origin, reason)
            if method == "fit" and (node.args or node.keywords):
                return _Value(MODEL, origin)
            return _Value(ARTIFACT, origin)
        if isinstance(func, ast.Call):
            inner = self.expr(func)
            if inner.kind == MODEL:  # model(x): a forward pass gives data
                return _Value(DATASET, None)
        return _UNKNOWN


def _analyse(source: str, imports: Mapping[str, str] | None,
             inputs: Mapping[str, str] | None) -> dict[str, _Value]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    return _analyse_tree(tree, imports, inputs)


def _analyse_tree(tree: ast.Module, imports: Mapping[str, str] | None,
                  inputs: Mapping[str, str] | None, walrus: bool = True) -> dict[str, _Value]:
    analysis = _Analysis(imports, walrus)
    analysis.values.update({name: _Value(kind) for name, kind in (inputs or {}).items()})
    values = analysis.run(tree)
    assigned = _assigned_names(tree, walrus)
    return {name: value for name, value in values.items() if name in assigned}


def value_kinds(tree: ast.Module, imports: Mapping[str, str] | None = None,
                inputs: Mapping[str, str] | None = None, walrus: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """Both analyses of an already parsed step in one pass: ``(artifact type by variable,
    reason by variable that cannot be saved)``; arguments as for ``infer_artifact_types``.
    ``walrus=False`` says the code holds no ``:=``, which spares a walk of every expression."""
    values = _analyse_tree(tree, imports, inputs, walrus)
    return ({name: value.kind for name, value in values.items()},
            {name: value.unsaveable for name, value in values.items() if value.unsaveable})


def _assigned_names(tree: ast.Module, walrus: bool = True) -> set[str]:
    """Names that the top level of ``tree`` binds to values (not imports, functions or classes)."""
    names: set[str] = set()
    for node in top_level_statements(tree.body):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and getattr(node, "value", None) is not None:
            targets = [node.target]
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            targets = [node.target]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
        if walrus:
            targets += [child.target for child in _named_expressions(node)]
        for target in targets:
            if isinstance(target, ast.Name):
                names.add(target.id)
                continue
            for child in ast.walk(target):
                if isinstance(child, ast.Name):
                    names.add(child.id)
    return names
