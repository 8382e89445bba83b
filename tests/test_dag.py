"""The picture of the pipeline (nbconvert_kfp.dag): SVG drawn without graphviz, and Mermaid."""

from __future__ import annotations

import re
import runpy
import xml.etree.ElementTree as ET

import pytest

from nbconvert_kfp.script import dag

SVG = "{http://www.w3.org/2000/svg}"

HOSTILE = ['say "hi"', "<script>alert(1)</script>", "a&b c", "ünï-cödé ✓", "it's", "x|y]z"]


@pytest.fixture
def fan_model(pipeline_model, make_nb, convert):
    """load -> (train_tree, train_knn) -> evaluate; a prev-only edge; a grandparent data edge."""
    cells = [
        ("parameters", "SEED = 1\nNAME = '</text><script>x</script>'"),
        ("step:load", "data = [1, 2, 3]\nlabels = [0, 1, 0]\nprint(SEED)"),
        (["step:train_tree", "prev:load"], "tree = sum(data) + SEED"),
        (["step:train_knn", "prev:load"], "knn = len(labels)"),
        (["step:evaluate", "prev:train_tree;train_knn"], "print(tree, knn, data, NAME)"),
        (["step:audit", "prev:evaluate"], "print('done')"),
    ]
    _, resources = convert(make_nb(cells), name="fan")
    return resources["kfp"]


def _steps(root):
    return {g.get("data-step"): g for g in root.iter(f"{SVG}g") if g.get("class") == "step"}


def _edges(root):
    return {(g.get("data-source"), g.get("data-target")): g for g in root.iter(f"{SVG}g") if g.get("class") == "edge"}


def test_svg_is_well_formed_with_one_box_per_step_and_labelled_edges(fan_model):
    root = ET.fromstring(dag.svg(fan_model))
    assert root.tag == f"{SVG}svg"
    steps = _steps(root)
    assert sorted(steps) == sorted(s["name"] for s in fan_model["steps"])
    for name, group in steps.items():
        assert len(group.findall(f"{SVG}rect")) == 1
        assert group.find(f"{SVG}text").text == name
    edges = _edges(root)
    assert set(edges) == {("load", "train_tree"), ("load", "train_knn"), ("train_tree", "evaluate"),
                          ("train_knn", "evaluate"), ("load", "evaluate"), ("evaluate", "audit")}
    labels = [t.text for g in root.iter(f"{SVG}g") if g.get("class") == "edge-label" for t in g.iter(f"{SVG}text")]
    # Each data edge is labelled with the variables that flow on it (data reaches evaluate
    # from load, its grandparent); the prev-only edge evaluate -> audit carries no label and is dashed.
    assert sorted(labels) == sorted(["data", "labels", "tree", "knn", "data"])
    titles = {key: g.find(f"{SVG}title").text for key, g in edges.items()}
    assert titles["load", "train_knn"].endswith(": labels")
    assert "no data" in titles["evaluate", "audit"]
    assert edges["evaluate", "audit"].find(f"{SVG}path").get("stroke-dasharray")
    # Layers follow the topological generations: each step is drawn below its parents.
    top = {name: float(g.find(f"{SVG}rect").get("y")) + float(g.find(f"{SVG}rect").get("height")) / 2
           for name, g in steps.items()}  # the middle of each box
    assert top["train_tree"] == pytest.approx(top["train_knn"])
    assert top["load"] < top["train_tree"] < top["evaluate"] < top["audit"]
    # Parameters are listed, and a step names the ones it reads.
    listed = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "parameter"]
    assert listed == ["SEED: int = 1", "NAME: str = '</text><script>x</script>'"]
    assert "params: SEED" in [t.text for t in steps["load"].iter(f"{SVG}text")]
    assert not list(root.iter(f"{SVG}script"))


def test_hostile_step_names_are_escaped_in_svg_and_mermaid(make_nb, convert):
    cells = [(f"step:{HOSTILE[0]}", "v0 = 1")]
    for i, name in enumerate(HOSTILE[1:], 1):
        cells.append(([f"step:{name}", f"prev:{HOSTILE[i - 1]}"], f"v{i} = v{i - 1} + 1"))
    _, resources = convert(make_nb(cells), name="hostile")
    model = resources["kfp"]
    text = dag.svg(model)
    root = ET.fromstring(text)  # well-formed despite quotes, <, & and unicode
    assert sorted(_steps(root)) == sorted(HOSTILE)
    assert not list(root.iter(f"{SVG}script"))
    assert "<script>" not in text and "&lt;script&gt;" in text
    mermaid = dag.mermaid(model)
    nodes = re.findall(r'^    s\d+\["(.*)"\]$', mermaid, re.MULTILINE)
    assert len(nodes) == len(HOSTILE)
    for label in nodes:
        assert '"' not in label and "<script" not in label and "|" not in label and "]" not in label
        assert re.fullmatch(r"<b>[^<>]*</b>", label), label
    assert "#34;" in mermaid and "#60;script#62;" in mermaid and "ünï-cödé #10003;" in mermaid
    edges = re.findall(r"^    s\d+ -->\|\"([^\"|]*)\"\| s\d+$", mermaid, re.MULTILINE)
    assert edges == [f"v{i}" for i in range(len(HOSTILE) - 1)]


def test_mermaid_flowchart_and_markdown(fan_model):
    text = dag.mermaid(fan_model)
    assert text.startswith("flowchart TD\n")
    assert "-.->" in text  # the prev-only edge
    assert '-->|"labels"|' in text
    markdown = dag.markdown(fan_model)
    assert "```mermaid\nflowchart TD\n" in markdown and markdown.rstrip().endswith("```")


def test_the_script_writes_the_picture_without_the_renderer(tmp_path, make_nb, convert):
    """--dag PATH writes the precomputed SVG, or Mermaid (.mmd) or Markdown (.md), and compiles nothing."""
    cells = [("step:a", "x = 1"), ("step:b", "y = x + 1")]
    script, resources = convert(make_nb(cells), name="tiny")
    path = tmp_path / "tiny_pipeline.py"
    path.write_text(script, encoding="utf-8")
    namespace = runpy.run_path(str(path), run_name="tiny_dag_test")
    for name, expected in (("p.svg", dag.svg(resources["kfp"])), ("p.mmd", dag.mermaid(resources["kfp"])),
                           ("p.md", dag.markdown(resources["kfp"]))):
        assert namespace["main"](["--dag", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_text(encoding="utf-8") == expected
    assert not (tmp_path / "tiny_pipeline.yaml").exists()
