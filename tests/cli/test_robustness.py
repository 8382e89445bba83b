"""Broken and hostile notebooks through `jupyter nbconvert --to kfp`: one line naming the cell, no traceback."""

from __future__ import annotations

import json

import nbformat
import pytest

from helpers import build_notebook


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
    elif kind == "kernelspec a string":
        good["metadata"]["kernelspec"] = "python3"
        return json.dumps(good).encode(), ["metadata.kernelspec", "'python3'"]
    elif kind == "tag with a comma":
        good["cells"][1]["metadata"]["tags"] = ["step:b,c"]
        return json.dumps(good).encode(), ["cell 2:", "'step:b,c'", "comma"]
    elif kind == "lone surrogate in source":
        good["cells"][1]["source"] = "y = '\ud800'"
        return json.dumps(good, ensure_ascii=True).encode(), ["cell 2:", "surrogate", "\\ud800"]
    elif kind == "lone surrogate in tag":
        good["cells"][1]["metadata"]["tags"] = ["step:b\udc80"]
        return json.dumps(good, ensure_ascii=True).encode(), ["cell 2:", "surrogate", "tag"]
    return json.dumps(good).encode(), ["nbformat"]


@pytest.mark.parametrize("kind", ["not json", "not utf-8", "a list", "no nbformat", "no cell_type", "bad cell_type",
                                  "no source", "tags of numbers", "kernelspec a string", "tag with a comma", "lone surrogate in source",
                                  "lone surrogate in tag"])
def test_unreadable_notebook_is_one_line(tmp_path, run_nbconvert, kind):
    content, expected = _broken(kind)
    path = tmp_path / "broken.ipynb"
    path.write_bytes(content)
    _assert_one_line_failure(run_nbconvert(path), tmp_path, *expected)


def test_harmless_problems_are_repaired_with_a_warning(tmp_path, run_nbconvert):
    content = _notebook_json([(["step:a"], "x = 1"), (["step:b"], "y = x")])
    content["cells"][1]["metadata"]["tags"] = "step:b"
    content["cells"][0]["metadata"]["tags"] = ["step:a", "", "step:a"]
    content["cells"][0]["outputs"] = [{"output_type": "no such output"}]
    content["cells"][0]["id"] = "not a valid id"
    content["cells"][1]["id"] = "not a valid id"
    content["cells"].append({"cell_type": "markdown", "source": "notes"})
    del content["metadata"]
    path = tmp_path / "repair.ipynb"
    path.write_text(json.dumps(content), encoding="utf-8")
    result = run_nbconvert(path)
    assert result.returncode == 0, result.stderr
    assert "cell 2: the cell's tags are one string" in result.stderr
    assert "cell 3: the cell has no metadata" in result.stderr
    assert "the notebook has no metadata" in result.stderr
    assert "cell 1: the cell has an empty tag" in result.stderr
    assert "cell 1: the tag 'step:a' appears more than once" in result.stderr
    assert "Traceback" not in result.stderr and "DuplicateCellId" not in result.stderr, result.stderr
    script = (tmp_path / "repair_pipeline.py").read_text(encoding="utf-8")
    assert "def b(" in script and "Step(\"b\"" in script, script[:3000]


@pytest.mark.parametrize("cells, expected", [
    ([(["step:a"], "x = 1"), (["step:b"], "%%time\ny = (1,\n")], ["cell 2:", "syntax error"]),
    ([(["step:a"], "x = " + "+".join(["1"] * 20000))], ["cell 1:", "too deeply nested"]),
])
def test_unparsable_cell_is_one_line(tmp_path, run_nbconvert, cells, expected):
    path = tmp_path / "bad.ipynb"
    nbformat.write(build_notebook(cells), path)
    _assert_one_line_failure(run_nbconvert(path), tmp_path, *expected)


# --- values the cluster would refuse are refused where they enter -----------------------------------

@pytest.mark.parametrize("tag, expected", [
    ("label:team:a b", ["label value"]),
    ("label:team:" + "x" * 64, ["longer than 63"]),
    ("label:" + "k" * 64 + ":ml", ["label key"]),
    ("label:Bad_Domain.com/team:ml", ["prefix"]),
    ("annotation:-owner:alice", ["annotation key"]),
    ("node-selector:pool:gpu/pool", ["node selector value"]),
    ("secret:DB_creds:password:DB_PASS", ["secret name"]),
    ("secret:db-creds:pass word:DB_PASS", ["secret key"]),
    ("retry:3:30s:nan", ["backoff factor"]),
    ("retry:3:30s:inf", ["backoff factor"]),
    ("timeout:100000000000000000000d", ["duration"]),
    ("timeout:1e20d", ["duration"]),
])
def test_step_option_the_cluster_refuses_is_one_line(tmp_path, run_nbconvert, tag, expected):
    path = tmp_path / "options.ipynb"
    nbformat.write(build_notebook([(["step:a"], "x = 1"), (["step:b", tag], "y = x")]), path)
    _assert_one_line_failure(run_nbconvert(path), tmp_path, "cell 2:", repr(tag), *expected)


def test_valid_kubernetes_values_still_convert(tmp_path, run_nbconvert):
    tags = ["step:b", "label:example.com/team:ml-ops", "label:empty:", "annotation:owner:Alice Smith <a@b.c>",
            "node-selector:cloud.google.com/gke-nodepool:gpu_pool.1", "secret:db.creds:.pass-word_1:DB_PASS",
            "retry:3:30s:1.5", "timeout:24855d"]
    path = tmp_path / "fine.ipynb"
    nbformat.write(build_notebook([(["step:a"], "x = 1"), (tags, "y = x")]), path)
    result = run_nbconvert(path)
    assert result.returncode == 0, result.stderr
    script = (tmp_path / "fine_pipeline.py").read_text(encoding="utf-8")
    assert '{".pass-word_1": "DB_PASS"}' in script and '"gpu_pool.1"' in script


def _volume(**fields):
    return dict({"type": "new_pvc", "name": "data", "mount_point": "/data", "size": 5, "size_type": "Gi"}, **fields)


@pytest.mark.parametrize("volumes, expected", [
    ([_volume(size="lots")], ["volumes[0]", "'lots'", "quantity"]),
    ([_volume(size=-5)], ["volumes[0]", "'-5Gi'"]),
    ([_volume(size=0)], ["volumes[0]", "zero"]),
    ([_volume(size_type="Gigs")], ["volumes[0]", "'5Gigs'"]),
    ([_volume(), _volume(name="other", mount_point="/data/")], ["volumes[1]", "volumes[0]", "'/data'"]),
    ([_volume(type="pvc", name="My Claim")], ["volumes[0]", "'My Claim'"]),
    ([_volume(storage_class_name="Fast SSD")], ["volumes[0]", "storage class", "'Fast SSD'"]),
    ([_volume(annotations=[{"key": "bad key!", "value": "x"}])], ["volumes[0]", "annotation key", "'bad key!'"]),
])
def test_volume_the_cluster_refuses_is_one_line(tmp_path, run_nbconvert, volumes, expected):
    path = tmp_path / "volumes.ipynb"
    nb = build_notebook([(["step:a"], "x = 1")], metadata={"kubeflow_notebook": {"volumes": volumes}})
    nbformat.write(nb, path)
    _assert_one_line_failure(run_nbconvert(path), tmp_path, *expected)


def test_a_save_removes_scratch_folders_of_dead_writers_only(tmp_path):
    import subprocess
    import sys

    from nbconvert_kfp.runtime.marshal import resource_load, resource_save

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    artifact = tmp_path / "artifact"
    (artifact / f".partial-{dead.pid}-abc").mkdir(parents=True)
    (artifact / ".partial-oldstyle").mkdir()
    (artifact / ".partial-1-live").mkdir()  # pid 1 runs as long as the machine does
    resource_save({"k": [1, 2]}, str(artifact))
    assert sorted(p.name for p in artifact.iterdir()) == [".partial-1-live", "value.pkl"]
    assert resource_load(str(artifact)) == {"k": [1, 2]}


def test_a_list_parameter_holding_none_compiles_and_keeps_its_value(tmp_path, run_nbconvert, run_script_compile):
    from nbconvert_kfp.runtime.step import Step

    path = tmp_path / "nones.ipynb"
    nbformat.write(build_notebook([(["pipeline-parameters"], "A = [None, 'x']\nB = {'k': None}\nC = [{1}]"),
                                   (["step:a"], "y = (A, B, C)")]), path)
    result = run_nbconvert(path)
    assert result.returncode == 0, result.stderr
    spec = run_script_compile(tmp_path / "nones_pipeline.py")
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert Step.literal(inputs["A"]["defaultValue"]) == [None, "x"]
    assert Step.literal(inputs["B"]["defaultValue"]) == {"k": None}
    assert Step.literal(inputs["C"]["defaultValue"]) == [{1}]
