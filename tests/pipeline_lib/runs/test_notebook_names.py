"""Notebook names: built-ins in notebooks/, analyses in notebooks/analyses/, checked and unambiguous;
what `workbench run all` runs, in which order, after what."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.runs.notebooks import UnknownNotebook, analyses, available_notebooks, notebook_path, plan
from pipeline_lib.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    folder = tmp_path / "notebooks"
    (folder / "analyses").mkdir(parents=True)
    (folder / "dashboards").mkdir()
    for path in ("clean", "process", "analyses/zeta", "analyses/gender_gap", "dashboards/overview"):
        (folder / f"{path}.ipynb").write_text("{}")
    (folder / "analyses" / "notes.txt").write_text("not a notebook")
    return Settings(data_dir=tmp_path / "var", notebooks_dir=folder)


def test_an_analysis_is_found_by_its_name_and_a_builtin_in_the_notebooks_folder(settings: Settings) -> None:
    assert notebook_path(settings, "gender_gap") == settings.notebooks_dir / "analyses" / "gender_gap.ipynb"
    assert notebook_path(settings, "clean") == settings.notebooks_dir / "clean.ipynb"


def test_analyses_are_listed_by_name_and_available_notebooks_holds_both(settings: Settings) -> None:
    assert analyses(settings) == ["gender_gap", "zeta"]
    assert available_notebooks(settings) == ["clean", "gender_gap", "process", "zeta"]


def test_a_name_that_is_both_a_builtin_and_an_analysis_is_refused_saying_so(settings: Settings) -> None:
    (settings.notebooks_dir / "analyses" / "process.ipynb").write_text("{}")
    with pytest.raises(UnknownNotebook, match=r"'process' is both a built-in notebook .* and an analysis"):
        notebook_path(settings, "process")


@pytest.mark.parametrize("name", ["../clean", "analyses/zeta", ".hidden", "a b", "-p", "", "x" * 101, "all"])
def test_a_name_with_a_path_or_odd_characters_is_refused(settings: Settings, name: str) -> None:
    with pytest.raises(UnknownNotebook, match="is not a notebook name"):
        notebook_path(settings, name)


def test_an_unknown_name_lists_the_notebooks_there_are(settings: Settings) -> None:
    with pytest.raises(
        UnknownNotebook, match=r"no notebook 'gap' .*there are: clean, gender_gap, process, zeta"
    ):
        notebook_path(settings, "gap")


def test_all_runs_clean_process_then_each_analysis_by_name_each_after_process(settings: Settings) -> None:
    names, needs = plan("all", settings)
    assert names == ["clean", "process", "gender_gap", "zeta"]
    assert needs == {"process": "clean", "gender_gap": "process", "zeta": "process"}
    assert plan("zeta", settings) == (["zeta"], {})
