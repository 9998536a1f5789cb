"""`workbench run -p` values checked against the notebook's typed parameters before anything starts,
and `workbench schedule show` flagging a schedule line `workbench run` would refuse. Run as real
processes with the shipped notebooks and no db-api: a refusal must not need one, nor a kernel."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.wire_servers import free_port

EXIT_USAGE = 2


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    # Nothing listens there: a run that got as far as connecting would exit 1, not 2.
    return {
        **clean,
        "WORKBENCH_DATA_DIR": str(tmp_path / "var"),
        "WORKBENCH_DB_API_ADDRESS": f"127.0.0.1:{free_port()}",
    }


def _workbench(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline_lib.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _refused(env: dict[str, str], *args: str) -> str:
    done = _workbench(env, *args)
    assert done.returncode == EXIT_USAGE, (done.stdout, done.stderr)
    assert "executing" not in done.stdout and "run " not in done.stdout
    assert not (Path(env["WORKBENCH_DATA_DIR"]) / "runs").exists()  # no output notebook, no kernel
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_value_not_of_the_declared_type_is_a_usage_error(env: dict[str, str]) -> None:
    assert _refused(env, "run", "process", "-p", "seed", "abc") == (
        "error: parameter seed of process must be an integer from 0 to 2_147_483_647, got 'abc'"
    )


def test_a_value_out_of_range_is_a_usage_error_naming_the_range(env: dict[str, str]) -> None:
    assert _refused(env, "run", "clean", "-p", "batch_size", "0") == (
        "error: parameter batch_size of clean must be an integer of at least 1, got 0"
    )


def test_an_unknown_parameter_is_a_usage_error_listing_the_known_ones(env: dict[str, str]) -> None:
    line = _refused(env, "run", "process", "-p", "colour", "red")
    assert line.startswith("error: process has no parameter colour (its parameters: ")
    assert "k_min_group" in line and "seed" in line and "dry_run" not in line


def test_all_checks_each_value_against_the_notebook_that_declares_it(env: dict[str, str]) -> None:
    assert _refused(env, "run", "all", "-p", "limit", "10", "-p", "dry_run", "maybe") == (
        "error: parameter dry_run of clean must be true or false, got 'maybe'"
    )


def test_schedule_show_flags_a_line_workbench_run_would_refuse(env: dict[str, str], tmp_path: Path) -> None:
    schedule = tmp_path / "crontab"
    schedule.write_text(
        "*/10 * * * * clean\n"
        "5 * * * * process -p seed abc\n"
        "@hourly process -p k_min_group none -p seed 7\n"
        "@daily nope\n"
    )
    done = _workbench({**env, "WORKBENCH_SCHEDULE_FILE": str(schedule)}, "schedule", "show")
    assert done.returncode == EXIT_USAGE
    lines = done.stdout.splitlines()
    flagged = [
        (job.split(":")[0].strip(), error.strip())
        for job, error in itertools.pairwise(lines)
        if "error:" in error
    ]
    assert [job for job, _ in flagged] == ["line 2", "line 4"]
    assert flagged[0][1] == (
        "error: parameter seed of process must be an integer from 0 to 2_147_483_647, got 'abc'"
    )
    assert "no notebook 'nope'" in flagged[1][1]
    assert "would refuse 2 job(s)" in done.stderr


def test_the_shipped_schedule_shows_without_a_flag(env: dict[str, str]) -> None:
    done = _workbench(env, "schedule", "show")
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stdout


@pytest.mark.parametrize("command", [("schedule", "install", "--print"), ("scheduler",), ("up",)])
def test_a_line_workbench_run_would_refuse_is_neither_installed_nor_scheduled(
    env: dict[str, str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Such a line was installed (and loaded by the scheduler) without a word; under cron its run
    then exits 2 before it makes a record, so no history, webhook or e-mail says it failed."""
    schedule = tmp_path / "crontab"
    schedule.write_text("*/10 * * * * clean\n5 * * * * process -p seed abc\n7 * * * * process --timeout 0\n")
    done = _workbench({**env, "WORKBENCH_SCHEDULE_FILE": str(schedule)}, *command)
    assert done.returncode == EXIT_USAGE, (done.stdout, done.stderr)
    assert "*/10" not in done.stdout  # nothing printed for installing, nothing started
    assert "line 2" in done.stderr and "seed of process must be an integer" in done.stderr
    assert "line 3" in done.stderr and "--timeout" in done.stderr


def test_schedule_show_flags_a_timeout_run_would_refuse(env: dict[str, str], tmp_path: Path) -> None:
    schedule = tmp_path / "crontab"
    schedule.write_text("7 * * * * process --timeout 0\n")
    done = _workbench({**env, "WORKBENCH_SCHEDULE_FILE": str(schedule)}, "schedule", "show")
    assert done.returncode == EXIT_USAGE and "--timeout" in done.stdout, (done.stdout, done.stderr)


def test_a_notebook_that_does_not_read_is_left_to_its_run(env: dict[str, str], tmp_path: Path) -> None:
    """A half-saved analysis made the new check raise, which would have stopped the scheduler."""
    import shutil

    from pipeline_lib.settings import PROJECT_DIR

    notebooks = tmp_path / "notebooks"
    shutil.copytree(PROJECT_DIR / "notebooks", notebooks)
    (notebooks / "analyses").mkdir(exist_ok=True)
    (notebooks / "analyses" / "half_saved.ipynb").write_text('{"cells": [')
    schedule = tmp_path / "crontab"
    schedule.write_text("0 2 * * * all\n")
    done = _workbench(
        {**env, "WORKBENCH_SCHEDULE_FILE": str(schedule), "WORKBENCH_NOTEBOOKS_DIR": str(notebooks)},
        "schedule", "install", "--print",
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert " all " in done.stdout


def test_schedule_show_lists_a_follower_of_two_once_under_the_last(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A follower of two notebooks of one chain runs once, after both: shown so, once, and not
    again at the end as a line no job shows."""
    import nbformat

    analyses = tmp_path / "notebooks" / "analyses"
    analyses.mkdir(parents=True)
    for name in ("left", "right", "joined"):
        nbformat.write(
            nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), analyses / f"{name}.ipynb"
        )
    schedule = tmp_path / "crontab"
    schedule.write_text("5 * * * * left\nafter left right\nafter left joined\nafter right joined\n")
    env = {
        **env,
        "WORKBENCH_SCHEDULE_FILE": str(schedule),
        "WORKBENCH_NOTEBOOKS_DIR": str(tmp_path / "notebooks"),
    }
    done = _workbench(env, "schedule", "show")
    assert done.returncode == 0, (done.stdout, done.stderr)
    shown = [line.strip() for line in done.stdout.splitlines() if "joined" in line]
    assert shown == ["line 3, 4: after left, right workbench run joined"], done.stdout
