"""A run passes `dry_run=False` to a notebook that declares it (the clean notebook's own default,
for an analyst running it by hand, is a dry run), unless the caller gave a value."""

from __future__ import annotations

from pathlib import Path

from pipeline_lib.runs.executor import with_run_defaults
from pipeline_lib.runs.parameters import parse_cell, read_notebook

CLEAN = Path(__file__).resolve().parents[3] / "notebooks" / "clean.ipynb"


def test_the_clean_notebook_run_by_hand_is_a_dry_run() -> None:
    assert "dry_run: bool = True" in CLEAN.read_text()
    assert read_notebook(CLEAN)["dry_run"].kind == "bool"


def test_a_run_of_the_clean_notebook_commits_unless_told_otherwise() -> None:
    declared = read_notebook(CLEAN)
    assert with_run_defaults(declared, {}) == {"dry_run": False}
    assert with_run_defaults(declared, {"limit": 10}) == {"dry_run": False, "limit": 10}


def test_a_dry_run_asked_for_with_p_is_kept() -> None:
    assert with_run_defaults(read_notebook(CLEAN), {"dry_run": True}) == {"dry_run": True}


def test_a_notebook_without_dry_run_gets_nothing_added() -> None:
    declared = parse_cell("run_id: str | None = None\nseed: int = 1  # 0..")
    assert with_run_defaults(declared, {"seed": 3}) == {"seed": 3}
