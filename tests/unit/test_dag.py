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


# --- the layout: no edge through a box, distinct arrow ends, wide pipelines, a legend --------------------


def _boxes(root):
    """Step name -> (x, y, width, height) of its box."""
    return {name: tuple(float(g.find(f"{SVG}rect").get(k)) for k in ("x", "y", "width", "height"))
            for name, g in _steps(root).items()}


def _points(group):
    """The points of an edge's path (straight segments: M x,y L x,y ...)."""
    d = group.find(f"{SVG}path").get("d")
    assert re.fullmatch(r"M[\d.]+,[\d.]+( L[\d.]+,[\d.]+)+", d), d
    return [tuple(map(float, p.split(","))) for p in re.findall(r"[\d.]+,[\d.]+", d)]


def _crosses(a, b, box):
    """Whether segment a-b passes through the inside of ``box`` (Liang-Barsky clipping; touching the
    border, as an edge does where it leaves or enters its box, is not crossing)."""
    x, y, w, h = box[0] + 1, box[1] + 1, box[2] - 2, box[3] - 2
    (x1, y1), (x2, y2) = a, b
    t0, t1 = 0.0, 1.0
    for p, q in ((-(x2 - x1), x1 - x), (x2 - x1, x + w - x1), (-(y2 - y1), y1 - y), (y2 - y1, y + h - y1)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def _wide_model(convert, make_nb):
    """load -> 10 parallel trainings -> pick -> report; report also reads load's data (spans every row)."""
    cells = [("step:load", "data = [1, 2, 3]")]
    cells += [([f"step:train_{i}", "prev:load"], f"m{i} = sum(data) * {i}") for i in range(10)]
    cells += [("step:pick", " + ".join(f"m{i}" for i in range(10)) + "\nbest = 1"),
              (["step:report", "prev:pick"], "print(best, data)")]
    _, resources = convert(make_nb(cells), name="wide")
    return resources["kfp"]


@pytest.mark.parametrize("which", ["fan", "wide"])
def test_no_edge_runs_through_a_box_and_fan_in_arrows_end_apart(which, fan_model, convert, make_nb):
    model = fan_model if which == "fan" else _wide_model(convert, make_nb)
    root = ET.fromstring(dag.svg(model))
    boxes = _boxes(root)
    names = sorted(boxes)
    for i, a in enumerate(names):  # boxes do not overlap
        for b in names[i + 1:]:
            (ax, ay, aw, ah), (bx, by, bw, bh) = boxes[a], boxes[b]
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (a, b)
    ends = {}
    for (source, target), group in _edges(root).items():
        points = _points(group)
        for a, b in zip(points, points[1:]):
            for name, box in boxes.items():
                assert not _crosses(a, b, box), f"edge {source} -> {target} runs through {name}"
        assert points[0][1] == pytest.approx(boxes[source][1] + boxes[source][3])  # leaves the source's bottom
        assert points[-1][1] == pytest.approx(boxes[target][1])  # and ends on the target's top
        ends.setdefault(target, []).append(points[-1][0])
    for target, xs in ends.items():  # each edge into a step has its own arrow end
        xs.sort()
        assert all(b - a >= 8 for a, b in zip(xs, xs[1:])), (target, xs)
    if which == "fan":
        assert len(ends["evaluate"]) == 3  # train_tree, train_knn and load (which skips a row)


def test_ten_parallel_steps_wrap_into_rows_at_full_size(convert, make_nb):
    root = ET.fromstring(dag.svg(_wide_model(convert, make_nb)))
    boxes = _boxes(root)
    rows = {}
    for name, (x, y, w, h) in boxes.items():
        rows.setdefault(y, []).append(name)
    widest = max(len(names) for names in rows.values())
    assert widest <= dag.ROW_LIMIT and len(rows) == 5, rows
    assert float(root.get("width")) <= 1000  # fits a page without shrinking its text
    assert {t.get("font-size") for g in _steps(root).values() for t in g.iter(f"{SVG}text")} == {"13"}
    assert all(boxes[f"train_{i}"][1] < boxes["pick"][1] for i in range(10))


def test_legend_names_data_edges_prev_edges_and_parameters(fan_model, make_nb, convert):
    root = ET.fromstring(dag.svg(fan_model))
    [legend] = [g for g in root.iter(f"{SVG}g") if g.get("class") == "legend"]
    texts = [t.text for t in legend.iter(f"{SVG}text")]
    assert texts == ["data edge: the variables it carries", "prev: edge: runs after, no data", "pipeline parameters"]
    samples = {p.get("class"): p for p in legend.iter(f"{SVG}path")}
    assert not samples["legend-data"].get("stroke-dasharray") and samples["legend-prev"].get("stroke-dasharray")
    _, resources = convert(make_nb([("step:a", "x = 1")]), name="bare")
    [bare] = [g for g in ET.fromstring(dag.svg(resources["kfp"])).iter(f"{SVG}g") if g.get("class") == "legend"]
    assert "pipeline parameters" not in [t.text for t in bare.iter(f"{SVG}text")]  # none to show


@pytest.mark.parametrize("name", ["p.png", "p.pdf", "p"])
def test_dag_to_an_unknown_format_is_a_one_line_error(tmp_path, make_nb, convert, capsys, name):
    script, _ = convert(make_nb([("step:a", "x = 1")]), name="tiny")
    path = tmp_path / "tiny_pipeline.py"
    path.write_text(script, encoding="utf-8")
    namespace = runpy.run_path(str(path), run_name="tiny_dag_test")
    assert namespace["main"](["--dag", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".svg, .md, .mmd" in err and name in err
    assert not (tmp_path / name).exists() and not (tmp_path / "tiny_pipeline.yaml").exists()


# --- the graph a generated script reads from its own pipeline --------------------------------------------------

def _compared_notebooks():
    from helpers import GOLDEN_NOTEBOOKS, NOTEBOOKS

    return {**GOLDEN_NOTEBOOKS, **{p.stem: p for p in sorted(NOTEBOOKS.glob("*.ipynb"))}}


@pytest.mark.parametrize("name", sorted(_compared_notebooks()))
def test_the_graph_read_from_the_compiled_pipeline_is_the_graph_of_the_notebook(name, tmp_path):
    """Graph.from_pipeline (what a script draws and names steps by) gives what graph(model) gives: the same steps
    in the same order, task names, parameters, report and metrics outputs, edges with their variables, and
    pipeline parameters with types and defaults."""
    import nbformat

    from nbconvert_kfp.codegen.identifier import kfp_name
    from nbconvert_kfp.exporters import KFPExporter

    notebook = _compared_notebooks()[name]
    script, resources = KFPExporter().from_notebook_node(
        nbformat.read(notebook, as_version=4), {"metadata": {"name": notebook.stem, "path": str(notebook.parent)}})
    model = resources["kfp"]
    expected = dag.graph(model, {s["name"]: kfp_name(s["component"]["function"], "step") for s in model["steps"]},
                         {s["name"]: {k: s["component"][k] for k in ("report", "metrics") if s["component"].get(k)}
                          for s in model["steps"]})
    path = tmp_path / f"{name}_pipeline.py"
    path.write_text(script, encoding="utf-8")
    derived = dag.Graph.from_pipeline(runpy.run_path(str(path))["pipeline"])
    assert derived.to_data() == expected.to_data()
    assert derived.layers == expected.layers
