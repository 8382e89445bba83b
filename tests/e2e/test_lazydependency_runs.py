"""A local run names a lazy import the step's installs lack, until a package tag adds it."""

from __future__ import annotations

import nbformat

from helpers import PYTHON, build_notebook, nbconvert, run
from packageversion import installed_version


def test_local_run_names_a_lazy_import_the_installs_lack_until_a_package_tag_adds_it(tmp_path):
    # getattr hides the call from the conversion: only the local run sees pandas import tabulate
    cells = [(["step:make"], "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})"),
             (["step:show"], "text = getattr(df, 'to_' + 'markdown')()\nprint(text)")]
    lines = []
    for tags in (["step:show"], ["step:show", f"package:tabulate=={installed_version('tabulate')}"]):
        cells[1] = (tags, cells[1][1])
        path = tmp_path / "lazy.ipynb"
        nbformat.write(build_notebook(cells), path)
        converted = nbconvert(["--to", "kfp", path.name], cwd=tmp_path, merge=True)
        assert converted.returncode == 0, converted.stdout
        local = run([PYTHON, "lazy_pipeline.py", "--local", "--no-cache"], cwd=tmp_path)
        assert local.returncode == 0, local.stdout[-4000:]
        lines.append([line for line in local.stdout.splitlines() if line.startswith("note: step")])
    assert len(lines[0]) == 1, lines
    assert lines[0][0].startswith("note: step 'show' imported tabulate (distribution tabulate, through pandas.")
    assert lines[0][0].endswith(f"lack: tag a cell of the step 'package:tabulate=={installed_version('tabulate')}'")
    assert lines[1] == []
