"""Data files next to the notebook: found from the code, named at conversion, carried to the steps, hashed
for the local cache, pushed to an object store."""

from __future__ import annotations

import ast
import os
import random
from pathlib import Path

import pytest

from nbconvert_kfp.analysis import datafiles
from nbconvert_kfp.analysis.parsedcell import parse
from nbconvert_kfp.errors import KFPExportError
from nbconvert_kfp.exporters import KFPExporter, compile_script

from helpers import build_notebook, script_constant


def _named(sources: list[str], names: dict | None = None) -> datafiles.PathUse:
    cells = [parse({"index": i, "source": s}) for i, s in enumerate(sources)]
    return datafiles.path_use(cells, {} if names is None else names)


@pytest.mark.parametrize("source, path", [
    ('pd.read_csv("data/train.csv")', "data/train.csv"),
    ('path = "data/"\ndf = pd.read_csv(path + "train.csv")', "data/train.csv"),
    ('root = "data"\ndf = pd.read_csv(f"{root}/train.csv")', "data/train.csv"),
    ('import os\ndf = pd.read_csv(os.path.join("data", "train.csv"))', "data/train.csv"),
    ('from pathlib import Path\ntext = (Path("data") / "train.csv").read_text()', "data/train.csv"),
    ('from pathlib import Path\ntext = Path("data").joinpath("train.csv").read_text()', "data/train.csv"),
    ('with open(str("data/train.csv")) as fh:\n    text = fh.read()', "data/train.csv"),
    ('TRAIN: str = "data/train.csv"\nload(TRAIN)', "data/train.csv"),
])
def test_the_paths_a_cell_can_compute_are_named(source, path):
    assert path in _named([source]).named


@pytest.mark.parametrize("source", [
    'name = input()\npd.read_csv(name + ".csv")',
    'pd.read_csv("data/" + str(1))',
    'print(", ".join(["data", "train.csv"]))',
    'pd.read_csv(f"data/{n:03d}.csv")',
])
def test_paths_that_need_the_code_to_run_are_not_guessed(source):
    assert "data/train.csv" not in _named([source]).named


def test_names_carry_over_from_earlier_code_and_rebinding_forgets_them():
    names: dict[str, str] = {}
    _named(['DATA = "data/"'], names)
    assert "data/train.csv" in _named(['pd.read_csv(DATA + "train.csv")'], names).named
    assert "data/train.csv" not in _named(['DATA = compute()\npd.read_csv(DATA + "train.csv")'], names).named


def test_paths_the_code_writes_are_recorded():
    use = _named(['df.to_csv("out/result.csv")\nwith open("log.txt", "w") as fh:\n    fh.write("x")\n'
                  'import numpy as np\nnp.save(file="arr.npy", arr=x)'])
    assert {"out/result.csv", "log.txt", "arr.npy"} <= set(use.written)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("x\n1\n")
    (tmp_path / "data" / "test.csv").write_text("x\n2\n")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"\x89PNG")
    (tmp_path / "images" / ".hidden").write_text("no")
    (tmp_path / "helpers.py").write_text("X = 1\n")
    return tmp_path


def _found(folder, source, written=(), skip=()):
    return {(f.path, f.kind, tuple(f.files)) for f in
            datafiles.existing(folder, _named([source]), set(written), set(skip))}


def test_existing_files_folders_and_globs_are_found(folder):
    assert _found(folder, 'a = pd.read_csv("data/train.csv")') == {
        ("data/train.csv", "file", ("data/train.csv",))}
    assert _found(folder, 'files = glob.glob("data/*.csv")') == {
        ("data/*.csv", "glob", ("data/test.csv", "data/train.csv"))}
    assert _found(folder, 'names = os.listdir("images")') == {("images", "folder", ("images/a.png",))}


def test_a_folder_the_code_also_names_files_in_is_not_shipped_whole(folder):
    assert _found(folder, 'path = "data/"\ndf = pd.read_csv(path + "train.csv")') == {
        ("data/train.csv", "file", ("data/train.csv",))}


@pytest.mark.parametrize("source", [
    'pd.read_csv("/etc/hostname")', 'pd.read_csv("../x.csv")', 'pd.read_csv("missing.csv")',
    'pd.read_csv("s3://bucket/data/train.csv")', 'x = "."', 'x = ""', 'pd.read_csv("data/train.csv\\n")',
])
def test_paths_outside_the_folder_or_missing_are_not_inputs(folder, source):
    (folder.parent / "x.csv").write_text("outside")
    assert _found(folder, source) == set()


def test_files_the_pipeline_writes_first_are_not_inputs(folder):
    assert _found(folder, 'df.to_csv("data/train.csv")\nagain = pd.read_csv("data/train.csv")') == set()
    assert _found(folder, 'again = pd.read_csv("data/train.csv")', written={"data/train.csv"}) == set()
    assert _found(folder, 'import helpers\nopen("helpers.py")', skip={"helpers.py"}) == set()


def test_a_symlink_out_of_the_folder_is_not_followed(folder, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, folder / "link.txt")
    assert _found(folder, 'open("link.txt").read()') == set()


# --- conversion ------------------------------------------------------------------------------------


CELLS = [
    (["imports"], "import json"),
    (["step:load"], 'DATA = "data/"\nwith open(DATA + "rows.csv") as fh:\n    rows = fh.read().split()'),
    (["step:config"], 'settings = json.load(open("settings.json"))\nscale = settings["scale"]'),
    (["step:total"], "total = sum(float(r) for r in rows[1:]) * scale"),
    (["pipeline-metrics"], "total"),
]


def _write(folder: Path, cells=CELLS, rows="x\n1\n2\n3\n", scale=2) -> Path:
    import nbformat

    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "rows.csv").write_text(rows)
    (folder / "settings.json").write_text(f'{{"scale": {scale}}}')
    path = folder / "flow.ipynb"
    nbformat.write(build_notebook(cells), path)
    return path


def _convert(path: Path, caplog=None, **traits):
    return KFPExporter(**traits).from_filename(str(path))


def test_conversion_names_each_data_file_with_its_size_and_steps(tmp_path, caplog):
    path = _write(tmp_path)
    with caplog.at_level("INFO"):
        script, resources = _convert(path)
    lines = [r.getMessage() for r in caplog.records if "data file" in r.getMessage()]
    assert lines == ["data file data/rows.csv (8 B) read by step load (cell 2): travels inside the pipeline",
                     "data file settings.json (12 B) read by step config (cell 3): travels inside the pipeline"]
    data = script_constant(script, "DATA")
    assert data["data/rows.csv"]["via"] == "embedded" and data["data/rows.csv"]["size"] == len("x\n1\n2\n3\n")
    assert set(data["data/rows.csv"]["files"]) == {"data/rows.csv"}
    steps = {s["name"]: s.get("data") for s in resources["kfp"]["steps"]}
    assert steps == {"load": ["data/rows.csv"], "config": ["settings.json"], "total": []}


def test_only_the_steps_that_read_a_file_take_it_as_an_input(tmp_path):
    spec = __import__("yaml").safe_load(compile_script(_convert(_write(tmp_path))[0]))
    inputs = {name: set(task.get("inputs", {}).get("artifacts", {}))
              for name, task in spec["root"]["dag"]["tasks"].items()}
    assert "data_rows_csv" in inputs["load"] and "settings_json" in inputs["config"]
    assert not any(name.startswith(("data_", "settings")) for name in inputs["total"])


def _noise(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def test_a_file_too_large_to_embed_goes_through_the_object_store(tmp_path, caplog):
    path = _write(tmp_path)
    (tmp_path / "data" / "rows.csv").write_bytes(b"x\n" + _noise(200_000))
    with caplog.at_level("INFO"):
        script, _ = _convert(path, data_root="s3://team-bucket/pipelines/data")
    item = script_constant(script, "DATA")["data/rows.csv"]
    assert item["via"] == "store"
    assert any("travels through the object store (s3://team-bucket/pipelines/data/<digest>/)" in r.getMessage()
               for r in caplog.records)
    spec = __import__("yaml").safe_load(compile_script(script))
    importers = [e["importer"] for e in spec["deploymentSpec"]["executors"].values() if "importer" in e]
    assert [i["artifactUri"]["constant"] for i in importers] == [
        f"s3://team-bucket/pipelines/data/{item['digest']}"]


@pytest.mark.parametrize("traits, words", [
    ({"data_files": "embed"}, "too large to travel inside the pipeline"),
    ({"data_root": ""}, "data_root names no object store"),
])
def test_a_file_too_large_for_every_path_is_an_error_naming_the_cell(tmp_path, traits, words):
    path = _write(tmp_path)
    (tmp_path / "data" / "rows.csv").write_bytes(_noise(300_000))
    with pytest.raises(KFPExportError) as caught:
        _convert(path, **traits)
    assert words in str(caught.value) and "'data/rows.csv'" in str(caught.value)
    assert caught.value.cell_index == 1


@pytest.mark.parametrize("root", ["http://example.com/x", "minio://B/x", "s3://bucket/a b", "s3://bucket/$(x)",
                                  "gs://bucket/x\nimport os"])
def test_a_data_root_that_is_no_object_store_uri_is_refused(tmp_path, root):
    with pytest.raises(KFPExportError, match="data_root"):
        _convert(_write(tmp_path), data_root=root)


def test_with_data_files_none_nothing_travels(tmp_path):
    script, _ = _convert(_write(tmp_path), data_files="none")
    assert {item["via"] for item in script_constant(script, "DATA").values()} == {"none"}
    assert "def file_data_rows_csv(" not in script


def test_hostile_file_names_stay_data(tmp_path):
    cells = [(["step:load"], 'text = open("we\'ird $(touch pwned) \\"q\\".txt").read()')]
    import nbformat

    (tmp_path / "we'ird $(touch pwned) \"q\".txt").write_text("hello")
    nbformat.write(build_notebook(cells), tmp_path / "odd.ipynb")
    script, _ = _convert(tmp_path / "odd.ipynb")
    ast.parse(script)
    assert list(script_constant(script, "DATA")) == ["we'ird $(touch pwned) \"q\".txt"]
    compile_script(script)
    assert not (tmp_path / "pwned").exists()
