"""What `workbench up` suggests once ready is the README's quick start, word for word."""

from __future__ import annotations

from pathlib import Path

from pipeline_lib.cli.servers import NEXT_STEPS, next_steps
from pipeline_lib.settings import Settings
from tests.e2e.test_readme_quickstart import CHECKOUT, quick_start_blocks

README_WORKBENCH = ".venv/bin/workbench"  # how the README spells the command, from the checkout


def test_up_suggests_the_commands_of_the_readme_quick_start(tmp_path: Path) -> None:
    _setup, readme_steps = quick_start_blocks((CHECKOUT / "README.md").read_text())
    text = next_steps(Settings(data_dir=tmp_path), README_WORKBENCH)
    suggested = [line.strip() for line in text.splitlines() if line.strip().startswith(README_WORKBENCH)]
    assert suggested == readme_steps
    assert [step.removeprefix(f"{README_WORKBENCH} ") for step in readme_steps] == list(NEXT_STEPS)
