"""The README and docs/ document the code as it is: every field of the pipeline model, every module of the
package, every trait with its default; the README stays short and every relative link leads somewhere."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import nbconvert_kfp
from nbconvert_kfp import model

from helpers import REPO

PACKAGE = Path(nbconvert_kfp.__file__).parent
DOCS = REPO / "docs"
#: The pages whose links are checked: the README and every page in docs/.
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
#: The README gives the overview; the rest lives in docs/.
README_MAX_LINES = 300


def _text(page: str) -> str:
    return (REPO / page).read_text(encoding="utf-8")


def _section(text: str, title: str) -> str:
    """The ``## title`` section of ``text``, up to the next ``## `` heading."""
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def _table_rows(section: str, heading: str) -> list[list[str]]:
    """The cells of the rows of the first table after ``heading`` (a table's own header row counts as one)."""
    start = section.index(heading) - (1 if heading.startswith("|") else 0)
    table = re.search(r"\n(\|.*\|\n?)+", section[start:]).group(0)
    rows = []
    for row in table.strip().splitlines()[2:]:
        cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]
        rows.append([cell.strip() for cell in cells])
    return rows


def _table_fields(section: str, heading: str) -> set[str]:
    """The backquoted names in the first column of the table that follows ``heading``."""
    return {name for row in _table_rows(section, heading) for name in re.findall(r"`(\w+)`", row[0])}


@pytest.mark.parametrize("record, heading", [
    (model.Pipeline, "**Pipeline**"), (model.Settings, "**Settings**"), (model.Step, "**Step**"),
    (model.DataItem, "**DataItem**"),
    (model.Cell, "**Cell**"), (model.Parameter, "**Parameter**"), (model.Metric, "**Metric**"),
    (model.PrevTag, "**PrevTag**"), (model.Volume, "**Volume**"), (model.LazyUse, "**LazyUse**"),
    (model.PipelineOutput, "**PipelineOutput**"),
    (model.Component, "| Component field"),
    (model.Script, "| Script field"),
])
def test_the_model_tables_list_exactly_the_fields_of_each_record(record, heading):
    section = _section(_text("docs/architecture.md"), 'The pipeline model: `resources["kfp"]`')
    documented = _table_fields(section, heading)
    assert documented == set(record.__required_keys__ | record.__optional_keys__)


def test_the_code_layout_lists_every_module_and_package():
    section = _section(_text("docs/architecture.md"), "Code layout")
    listed = set(re.findall(r"^\s+([\w./]+?)/?\s{2,}", section, re.MULTILINE))
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    packages = {p.parent.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    names = {m.rsplit("/", 1)[-1] for m in modules} | packages
    missing = {name for name in names if name not in listed and name.rsplit("/", 1)[-1] not in listed}
    assert not missing, missing


def _configurables() -> list[type]:
    """The classes whose traits docs/settings.md documents (imported when a test runs: the server
    extension needs jupyter_server, which the minimum-versions venv collects these tests without)."""
    pytest.importorskip("jupyter_server")
    from nbconvert_kfp.exporters import KFPExporter
    from nbconvert_kfp.preprocessors import ComponentBuilder, DependencyAnalyzer, TagParser
    from nbconvert_kfp.serverextension import ConvertPolicy, DeployPolicy

    return [KFPExporter, TagParser, DependencyAnalyzer, ComponentBuilder, DeployPolicy, ConvertPolicy]


def _declared() -> dict[str, tuple[Any, Any]]:
    """``{"Class.trait": (trait, default)}`` for every configurable trait each class declares itself."""
    declared = {}
    for cls in _configurables():
        instance = cls()
        for name, trait in cls.class_traits(config=True).items():
            if name in cls.__dict__ and name != "enabled":
                declared[f"{cls.__name__}.{name}"] = (trait, instance.trait_defaults(name))
    return declared


def _documented() -> dict[str, list[str]]:
    """``{"Class.trait": [default cell, meaning cell]}`` from the tables of docs/settings.md."""
    text = _text("docs/settings.md")
    documented: dict[str, list[str]] = {}
    for title in ("The exporter and its preprocessors", "The Jupyter server's policies"):
        for row in _table_rows(_section(text, title), "| trait | default | meaning |"):
            names = re.findall(r"`(\w+\.\w+)`", row[0])
            assert len(names) == 1, f"one trait per row: {row[0]}"
            assert names[0] not in documented, f"documented twice: {names[0]}"
            documented[names[0]] = row[1:]
    return documented


def _shown(value: Any) -> set[str]:
    """How docs/settings.md may write a fixed default."""
    if isinstance(value, float) and value.is_integer():
        return {f"`{int(value)}`", f"`{value}`"}
    if isinstance(value, (list, tuple)):
        return {f"`{json.dumps(list(value))}`"}
    return {f"`{value}`"}


def test_the_settings_table_lists_exactly_the_traits_the_code_declares():
    assert set(_documented()) == set(_declared())


@pytest.mark.parametrize("name", sorted(_documented()))
def test_the_settings_table_gives_each_traits_fixed_default_and_every_choice(name):
    declared = _declared()
    assert name in declared, f"{name}: no such trait"
    trait, default = declared[name]
    cells = _documented()[name]
    assert len(cells) == 2 and all(cells), cells
    if default not in (None, ""):  # None and '': the setting falls back on the metadata, the pod, ...
        assert any(shown in cells[0] for shown in _shown(default)), (cells[0], default)
    for value in getattr(trait, "values", None) or ():
        assert f"`{value}`" in " ".join(cells), value


def test_the_readme_is_an_overview():
    lines = _text("README.md").splitlines()
    assert len(lines) <= README_MAX_LINES, len(lines)


_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans, which hold no links or headings."""
    return re.sub(r"`[^`\n]*`", "", _FENCE.sub("", text))


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``page``: lower case, punctuation dropped, spaces as dashes."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", page.read_text(encoding="utf-8")), re.MULTILINE):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def _relative_links() -> list[tuple[Path, str]]:
    links = []
    for page in PAGES:
        for target in _LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                links.append((page, target))
    return links


def test_the_docs_pages_are_where_the_readme_points():
    linked = {(REPO / target.split("#")[0]).resolve() for page, target in _relative_links()
              if page.name == "README.md" and target.startswith("docs/") and target.split("#")[0].endswith(".md")}
    assert linked == {page.resolve() for page in DOCS.glob("*.md")}


@pytest.mark.parametrize("page, target", _relative_links(),
                         ids=lambda value: value.relative_to(REPO).as_posix() if isinstance(value, Path) else value)
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page, target):
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    assert file.is_relative_to(REPO) and file.exists(), f"{page.name}: {target}"
    if anchor:
        assert file.suffix == ".md", f"{page.name}: {target}"
        assert anchor in _anchors(file), f"{page.name}: {target}: no such heading"
