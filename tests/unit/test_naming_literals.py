"""naming.py and pyliteral.py: identifiers, KFP names and literals that are valid for any input."""

from __future__ import annotations

import ast
import keyword
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbconvert_kfp.codegen.identifier import Namer, ascii_identifier, kfp_name
from nbconvert_kfp.codegen.literal import code_literal, python_literal

KFP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")

TRICKY = [
    "", "x", "'''", '"""', "'", '"', "\\", "a\\", "\\'", "'''\\", "\\'''", "''", "'' '",
    "x = '''a'''\n", 'y = """b"""', "r'\\d'\n", "\r", "\r\n", "a\rb", "\x00", "\x0b\x0c", "\x1a",
    "\x1b[31m", "\t\tindented", "caf\u00e9 \u2615 \U0001d518", "\u2028\u2029", "\ufeffbom", "\x7f",
    "ends with backslash \\\n", "'''\"\"\"'''", "\\\\\\", "\n", "\n\n",
]

# text without lone surrogates (they cannot be written to a UTF-8 script file)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
TEXT_WITH_QUOTES = st.text(st.sampled_from(list("'\"\\\n\r\t\x00\x0c\x1a ab\u00e9\u2615")), max_size=40)


def _value_in_script(literal):
    """The value the literal has in a UTF-8 script file, as Python reads it."""
    namespace = {}
    exec(compile(("value = " + literal + "\n").encode("utf-8"), "script.py", "exec"), namespace)
    return namespace["value"]


# --- code_literal ---------------------------------------------------------------------------

@pytest.mark.parametrize("source", [s + "\n" for s in TRICKY])
def test_code_literal_of_newline_terminated_source(source):
    literal = code_literal(source)
    assert ast.literal_eval(literal) == "\n" + source
    assert _value_in_script(literal) == "\n" + source


@given(st.one_of(TEXT, TEXT_WITH_QUOTES))
@settings(max_examples=300, deadline=None)
def test_code_literal_round_trips_newline_terminated_text(text):
    source = text + "\n"
    literal = code_literal(source)
    assert ast.literal_eval(literal) == "\n" + source
    assert _value_in_script(literal) == "\n" + source


def _expected_code_value(source):
    """code_literal's documented value: a leading newline, and a final one if missing."""
    return "\n" + source + ("" if source.endswith("\n") else "\n")


def test_code_literal_is_newline_plus_source():
    wrong = {source: ast.literal_eval(code_literal(source)) for source in TRICKY}
    wrong = {source: value for source, value in wrong.items() if value != _expected_code_value(source)}
    assert wrong == {}


def test_code_literal_closes_on_its_own_line_when_source_ends_in_a_quote():
    for source in ["x = 'a'", 'x = "a"', "x = '''a'''", 'x = """a"""']:
        literal = code_literal(source)
        assert literal.endswith("\n" + literal[-3:])
        assert ast.literal_eval(literal) == _expected_code_value(source)


@given(st.one_of(TEXT, TEXT_WITH_QUOTES))
@settings(max_examples=300, deadline=None)
def test_code_literal_is_newline_plus_source_for_any_text(text):
    literal = code_literal(text)
    assert ast.literal_eval(literal) == _expected_code_value(text)
    assert _value_in_script(literal) == _expected_code_value(text)


def test_code_literal_keeps_backslashes_readable():
    literal = code_literal('pattern = r"\\d+"\nprint("a\\tb")\n')
    assert literal.startswith("r")
    assert 'r"\\d+"' in literal
    assert literal.count("\n") == 3


def test_code_literal_has_no_line_breaking_control_characters():
    for source in ["a\rb\n", "\x0c\n", "\x0b\n", "\x1a\n", "\x00\n", "\u2028\n"]:
        literal = code_literal(source)
        body = literal.replace("\n", "")
        assert not set(body) & {"\r", "\x0c", "\x0b", "\x1a", "\x00"}, repr(literal)


# --- python_literal -------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
    st.floats(allow_nan=False), TEXT, TEXT_WITH_QUOTES,
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(TEXT, st.integers()), children, max_size=4),
    ),
    max_leaves=12,
)


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


def _evaluate(literal):
    return eval(literal, {"__builtins__": {"float": float}})  # noqa: S307 - our own literal


@given(VALUES)
@settings(max_examples=300, deadline=None)
def test_python_literal_round_trips(value):
    literal = python_literal(value)
    assert _same(_evaluate(literal), value)
    assert _same(_value_in_script(literal), value)


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_python_literal_of_infinities(value):
    assert _evaluate(python_literal(value)) == value


def test_python_literal_of_nan():
    assert math.isnan(_evaluate(python_literal(float("nan"))))


def test_python_literal_tuple_becomes_list():
    assert _evaluate(python_literal((1, ("a", 2.5)))) == [1, ["a", 2.5]]


def test_python_literal_keeps_bool_distinct_from_int():
    assert _evaluate(python_literal(True)) is True
    assert _evaluate(python_literal([False, 0])) == [False, 0]
    assert type(_evaluate(python_literal([False, 0]))[0]) is bool


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes", 1j])
def test_python_literal_rejects_other_types(value):
    with pytest.raises(TypeError):
        python_literal(value)


# --- kfp_name -------------------------------------------------------------------------------

@given(TEXT)
@settings(max_examples=500, deadline=None)
def test_kfp_name_is_always_valid(text):
    assert KFP_NAME.match(kfp_name(text))


@pytest.mark.parametrize("text", ["", "-", "___", "☕", "!!!", "-a-", "A" * 300, "a-" * 100, "9lives",
                                  "é" * 200, "x" * 127 + "-y"])
def test_kfp_name_edge_cases(text):
    assert KFP_NAME.match(kfp_name(text)), kfp_name(text)


@pytest.mark.parametrize("text, expected", [
    ("My Pipeline!", "my-pipeline"),
    ("numpy_pandas_chain", "numpy-pandas-chain"),
    ("Café Müller", "cafe-muller"),
    ("already-valid-2", "already-valid-2"),
])
def test_kfp_name_examples(text, expected):
    assert kfp_name(text) == expected


# --- ascii_identifier and Namer -------------------------------------------------------------

@given(TEXT)
@settings(max_examples=300, deadline=None)
def test_ascii_identifier_is_a_usable_identifier(text):
    ident = ascii_identifier(text)
    assert ident.isidentifier() and ident.isascii()
    assert not keyword.iskeyword(ident) and not keyword.issoftkeyword(ident)


@given(st.lists(TEXT, max_size=25), st.sets(st.sampled_from(
    ["pipeline", "main", "dsl", "X", "x_2", "Step", "value", "kid_1", "json"]), max_size=6))
@settings(max_examples=300, deadline=None)
def test_namer_never_repeats_nor_returns_reserved(texts, reserved):
    namer = Namer(reserved)
    names = [namer.take(text) for text in texts]
    lowered = [name.lower() for name in names]
    assert len(set(lowered)) == len(lowered)
    assert not set(lowered) & {r.lower() for r in reserved}
    assert all(name.isidentifier() and not keyword.iskeyword(name) for name in names)


def test_namer_collisions_get_distinct_names():
    namer = Namer({"pipeline"})
    names = [namer.take(t) for t in ["kid-1", "kid_1", "Kid_1", "KID 1", "pipeline", "Pipeline", "class"]]
    assert len({n.lower() for n in names}) == len(names)
    assert names[0] == "kid_1"
    assert "pipeline" not in [n.lower() for n in names]
    assert names[-1] == "class_"


def test_namer_uses_fallback_for_unusable_text():
    namer = Namer()
    assert namer.take("☕", "step") == "step"
    assert namer.take("", "step") == "step_2"
    assert namer.take("1st", "step").startswith("step_")
