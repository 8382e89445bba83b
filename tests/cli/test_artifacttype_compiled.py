"""Artifact types in the compiled pipeline: the generated script compiles, and its IR carries the inferred types."""

from __future__ import annotations


def test_compiled_outputs_carry_the_inferred_artifact_types(tmp_path):
    from nbconvert_kfp.exporters import KFPExporter

    from compiledir import compile_all
    from helpers import build_notebook

    nb = build_notebook([
        (["imports"], "import pandas as pd\nfrom sklearn.linear_model import LinearRegression"),
        (["step:make"], "df = pd.DataFrame({'x': [1.0, 2.0, 3.0], 'y': [2.0, 4.0, 6.0]})\n"
                        "model = LinearRegression()\nscale = lambda v: v * 2"),
        (["step:fit", "prev:make"], "model.fit(df[['x']], df['y'])\nprint(scale(3))"),
        (["step:use", "prev:fit"], "print(model.predict(df[['x']]))"),
    ])
    script, _ = KFPExporter().from_notebook_node(nb, resources={"metadata": {"name": "typed"}})
    path = tmp_path / "typed_pipeline.py"
    path.write_text(script, encoding="utf-8")
    result, docs = compile_all(path)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = {component: {name: a["artifactType"]["schemaTitle"]
                           for name, a in spec.get("outputDefinitions", {}).get("artifacts", {}).items()
                           if name.endswith("_out")}
               for component, spec in docs[0]["components"].items()}
    assert outputs["comp-make"] == {"df_out": "system.Dataset", "model_out": "system.Model",
                                    "scale_out": "system.Artifact"}
    # 'fit' changes the model it loaded in place and passes it on, still a Model
    assert outputs["comp-fit"] == {"model_out": "system.Model"}
