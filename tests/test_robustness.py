"""Broken and hostile notebooks through `jupyter nbconvert --to kfp`: one line naming the cell, no traceback."""

from __future__ import annotations

import json

import nbformat
import pytest

from helpers import build_notebook

pytestmark = pytest.mark.slow


def _notebook_json(cells):
    return json.loads(nbformat.writes(build_notebook(cells)))


def _assert_one_line_failure(result, tmp_path, *expected):
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text in errors[0], result.stderr
    assert not list(tmp_path.glob("*_pipeline.*")), list(tmp_path.iterdir())


def _broken(kind):
    """A notebook file's content that nbformat cannot read, and what the error line must say."""
    good = _notebook_json([(["step:a"], "x = 1"), (["step:b"], "y = x")])
    if kind == "not json":
        return b'{"cells": [', ["not valid JSON", "line 1"]
    if kind == "not utf-8":
        return json.dumps(good).replace("x = 1", "x = 'XX'").encode().replace(b"XX", b"\xed\xa0\x80"), \
            ["not UTF-8", "0xed"]
    if kind == "a list":
        return b"[1, 2]", ["JSON list"]
    if kind == "no nbformat":
        del good["nbformat"]
    elif kind == "no cell_type":
        del good["cells"][1]["cell_type"]
        return json.dumps(good).encode(), ["cell 2:", "cell_type"]
    elif kind == "bad cell_type":
        good["cells"][1]["cell_type"] = "kode"
        return json.dumps(good).encode(), ["cell 2:", "'kode'"]
    elif kind == "no source":
        del good["cells"][0]["source"]
        return json.dumps(good).encode(), ["cell 1:", "source"]
    elif kind == "tags of numbers":
        good["cells"][1]["metadata"]["tags"] = [1, 2]
        return json.dumps(good).encode(), ["cell 2:", "tags"]
    elif kind == "bad outputs item":
        good["cells"][1]["outputs"] = [{"output_type": "stream"}]
        return json.dumps(good).encode(), ["cell 2:"]
    elif kind == "lone surrogate in source":
        good["cells"][1]["source"] = "y = '\ud800'"
        return json.dumps(good, ensure_ascii=True).encode(), ["cell 2:", "surrogate", "\\ud800"]
    elif kind == "lone surrogate in tag":
        good["cells"][1]["metadata"]["tags"] = ["step:b\udc80"]
        return json.dumps(good, ensure_ascii=True).encode(), ["cell 2:", "surrogate", "tag"]
    return json.dumps(good).encode(), ["nbformat"]


@pytest.mark.parametrize("kind", ["not json", "not utf-8", "a list", "no nbformat", "no cell_type", "bad cell_type",
                                  "no source", "tags of numbers", "bad outputs item", "lone surrogate in source",
                                  "lone surrogate in tag"])
def test_unreadable_notebook_is_one_line(tmp_path, run_nbconvert, kind):
    content, expected = _broken(kind)
    path = tmp_path / "broken.ipynb"
    path.write_bytes(content)
    _assert_one_line_failure(run_nbconvert(path), tmp_path, *expected)


def test_harmless_problems_are_repaired_with_a_warning(tmp_path, run_nbconvert):
    content = _notebook_json([(["step:a"], "x = 1"), (["step:b"], "y = x")])
    content["cells"][1]["metadata"]["tags"] = "step:b"
    content["cells"].append({"cell_type": "markdown", "source": "notes"})
    del content["metadata"]
    path = tmp_path / "repair.ipynb"
    path.write_text(json.dumps(content), encoding="utf-8")
    result = run_nbconvert(path)
    assert result.returncode == 0, result.stderr
    assert "cell 2: the cell's tags are one string" in result.stderr
    assert "cell 3: the cell has no metadata" in result.stderr
    assert "the notebook has no metadata" in result.stderr
    script = (tmp_path / "repair_pipeline.py").read_text(encoding="utf-8")
    assert "def b(" in script or "'b'" in script or '"b"' in script


@pytest.mark.parametrize("cells, expected", [
    ([(["step:a"], "x = 1"), (["step:b"], "%%time\ny = (1,\n")], ["cell 2:", "syntax error"]),
    ([(["step:a"], "x = " + "+".join(["1"] * 20000))], ["cell 1:", "too deeply nested"]),
])
def test_unparsable_cell_is_one_line(tmp_path, run_nbconvert, cells, expected):
    path = tmp_path / "bad.ipynb"
    nbformat.write(build_notebook(cells), path)
    _assert_one_line_failure(run_nbconvert(path), tmp_path, *expected)
