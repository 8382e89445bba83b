"""The README documents the code as it is: every field of the pipeline model, every module of the package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nbconvert_kfp
from nbconvert_kfp import model

from helpers import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
PACKAGE = Path(nbconvert_kfp.__file__).parent


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def _table_fields(section: str, heading: str) -> set[str]:
    """The backquoted names in the first column of the table that follows ``heading``."""
    start = section.index(heading) - (1 if heading.startswith("|") else 0)  # a table's own header row
    table = re.search(r"\n(\|.*\|\n)+", section[start:]).group(0)
    fields = set()
    for row in table.strip().splitlines()[2:]:
        first = row.split("|")[1]
        fields.update(re.findall(r"`(\w+)`", first))
    return fields


@pytest.mark.parametrize("record, heading", [
    (model.Pipeline, "**Pipeline**"), (model.Settings, "**Settings**"), (model.Step, "**Step**"),
    (model.Cell, "**Cell**"), (model.Parameter, "**Parameter**"), (model.Metric, "**Metric**"),
    (model.PrevTag, "**PrevTag**"), (model.Volume, "**Volume**"), (model.LazyUse, "**LazyUse**"),
    (model.PipelineOutput, "**PipelineOutput**"),
    (model.Component, "| Component field"),
    (model.Script, "| Script field"),
])
def test_the_model_tables_list_exactly_the_fields_of_each_record(record, heading):
    section = _section('The pipeline model: `resources["kfp"]`')
    documented = _table_fields(section, heading)
    assert documented == set(record.__required_keys__ | record.__optional_keys__)


def test_the_code_layout_lists_every_module_and_package():
    section = _section("Code layout")
    listed = set(re.findall(r"^\s+([\w./]+?)/?\s{2,}", section, re.MULTILINE))
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    packages = {p.parent.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    names = {m.rsplit("/", 1)[-1] for m in modules} | packages
    missing = {name for name in names if name not in listed and name.rsplit("/", 1)[-1] not in listed}
    assert not missing, missing


def test_every_trait_of_the_exporter_and_preprocessors_is_documented():
    from nbconvert_kfp.exporters import KFPExporter
    from nbconvert_kfp.preprocessors import ComponentBuilder, DependencyAnalyzer, TagParser

    options = _section("Options (traits)")
    for cls in (KFPExporter, TagParser, DependencyAnalyzer, ComponentBuilder):
        own = {name for name, trait in cls.class_traits(config=True).items()
               if name in cls.__dict__ and name not in ("enabled",)}
        for name in own:
            assert f"{cls.__name__}.{name}" in options or f".{name}`" in options, f"{cls.__name__}.{name}"
