"""The real-world bench's collection (bench/collect.py), from a Git repository made here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest

from bench import collect, realworld


def _commit(repo: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "files"], check=True)


def _notebook(*sources: str) -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return nbformat.writes(nb).encode()


def test_each_notebook_gets_a_folder_with_the_files_its_code_names(tmp_path):
    repo = tmp_path / "repos" / "someone+book"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    weather = _notebook("import pandas as pd\ndf = pd.read_csv('../data/weather.csv')\n%run helper.py")
    _commit(repo, {"chapters/weather.ipynb": weather,
                   "chapters/plain.ipynb": _notebook("data = 1\nprint(data)"),
                   "chapters/helper.py": b"X = 1\n", "chapters/big.bin": b"x" * (collect.SIBLING_LIMIT + 1),
                   "data/weather.csv": b"day,t\n1,2\n", "data/unread.csv": b"a\n", "data/huge.csv": b"y" * 5000,
                   "chapters/copy/weather.ipynb": weather, "other/skipped.ipynb": _notebook("1")})
    root = tmp_path / "collection" / "notebooks"
    source = collect.Source("book", "someone/book", ("chapters/*.ipynb",))

    tally = collect.collect((source,), root, tmp_path / "repos", clone=False, max_file=4096)

    assert (tally.notebooks, tally.duplicates) == (2, 1)  # the copy in chapters/copy/ is the same notebook
    weather_folder = root / "book" / "someone__book__chapters_weather"
    files = sorted(str(p.relative_to(weather_folder)) for p in weather_folder.rglob("*") if p.is_file())
    # '../data/weather.csv' resolves as in the repository: the notebook sits in chapters/ below the folder
    assert files == [".collected-folder", "chapters/helper.py", "chapters/weather.ipynb", "data/weather.csv"]
    plain = root / "book" / "someone__book__chapters_plain"
    assert sorted(p.name for p in plain.iterdir()) == [".collected-folder", "helper.py", "plain.ipynb"]
    manifest = json.loads((root.parent / "manifest.json").read_text())
    assert {(e["path"], e["local_file"]) for e in manifest} == {
        ("chapters/plain.ipynb", "notebooks/book/someone__book__chapters_plain/plain.ipynb"),
        ("chapters/weather.ipynb", "notebooks/book/someone__book__chapters_weather/chapters/weather.ipynb")}
    # a run copies the marked folder, so the notebook's ../data still resolves in the copy
    copy = realworld._copy_folder(weather_folder / "chapters" / "weather.ipynb", tmp_path / "run")
    assert copy == tmp_path / "run" / "chapters" / "weather.ipynb"
    assert (copy.parent / "../data/weather.csv").resolve().read_text() == "day,t\n1,2\n"
    assert not (tmp_path / "run" / ".collected-folder").exists()


def test_the_command_lists_a_data_file_over_the_limit_and_leaves_it_out(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repos" / "someone+data"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    _commit(repo, {"nb.ipynb": _notebook("open('data/huge.csv')"), "data/huge.csv": b"y" * 5000})
    monkeypatch.setattr(collect, "SOURCES", (collect.Source("g", "someone/data", ("*.ipynb",)),))

    status = collect.main([str(tmp_path / "c" / "notebooks"), "--repos", str(tmp_path / "repos"), "--no-clone",
                           "--max-file", "4096"])

    assert status == 0
    err = capsys.readouterr().err
    assert "collected 1 notebooks" in err and "larger than --max-file: 1\n  someone/data:data/huge.csv (5,000 B)" in err
    assert not list((tmp_path / "c").rglob("huge.csv"))
    with pytest.raises(SystemExit, match=r"no clone of someone/data in .*none/someone\+data \(and --no-clone\)"):
        collect.main([str(tmp_path / "d"), "--repos", str(tmp_path / "none"), "--no-clone"])
