"""Order between notebooks, with real runs against a real db-api: `workbench run all` runs the
analyses after process, and `after` lines of the schedule run when the run they follow succeeds
(started as the scheduler starts its jobs); the records name the run each one followed."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from pipeline_lib.runs.schedule import Job
from pipeline_lib.runs.scheduler import Scheduler
from pipeline_lib.settings import Settings
from tests.conftest import TOKEN
from tests.pipeline_lib.runs.conftest import RunEnv


def _analyses(run_env: RunEnv, **copies: str) -> None:
    """notebooks/analyses/NAME.ipynb as a copy of one of the tiny notebooks (ok, fails...)."""
    folder = run_env.notebooks / "analyses"
    folder.mkdir(exist_ok=True)
    for name, original in copies.items():
        (folder / f"{name}.ipynb").write_bytes((run_env.notebooks / f"{original}.ipynb").read_bytes())


def _by_notebook(run_env: RunEnv) -> dict[str, dict]:
    found = {r["notebook"]: r for r in run_env.runs()}
    assert len(found) == len(run_env.runs()), "one run per notebook expected"
    return found


def _schedule(run_env: RunEnv, tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crontab"
    path.write_text(text)
    run_env.env["WORKBENCH_SCHEDULE_FILE"] = str(path)
    return path


def _cron_run_of_ok(run_env: RunEnv, tmp_path: Path, schedule: str) -> subprocess.CompletedProcess:
    """`ok` run as its cron line runs it, with its followers from `schedule`."""
    path = _schedule(run_env, tmp_path, schedule)
    return run_env.workbench("run", "ok", "--triggered-by", "cron", "--followers-from", str(path))


@pytest.mark.slow
def test_all_runs_every_analysis_after_process_and_one_failing_does_not_stop_the_others(
    run_env: RunEnv,
) -> None:
    _analyses(run_env, a_first="ok", b_broken="fails", c_last="ok")
    done = run_env.workbench("run", "all", "-p", "n", "2")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    runs = _by_notebook(run_env)
    in_order = sorted(runs.values(), key=lambda r: r["started_at"])
    assert [(r["notebook"], r["status"]) for r in in_order] == [
        ("clean", "succeeded"),
        ("process", "succeeded"),
        ("a_first", "succeeded"),
        ("b_broken", "failed"),
        ("c_last", "succeeded"),
    ]
    assert runs["clean"]["after_run_id"] is None
    assert runs["process"]["after_run_id"] == runs["clean"]["run_id"]
    for name in ("a_first", "b_broken", "c_last"):
        assert runs[name]["after_run_id"] == runs["process"]["run_id"]
    assert runs["c_last"]["counts"]["cleaned"] == 2  # the -p value reaches analyses that declare it
    assert f"run {runs['c_last']['run_id']}: succeeded" in done.stdout
    assert f"after run {runs['process']['run_id']}" in done.stdout


@pytest.mark.slow
def test_when_process_fails_all_skips_the_analyses_and_says_why(run_env: RunEnv) -> None:
    _analyses(run_env, a_first="ok")
    (run_env.notebooks / "process.ipynb").write_bytes((run_env.notebooks / "fails.ipynb").read_bytes())
    done = run_env.workbench("run", "all")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    runs = _by_notebook(run_env)
    assert {n: r["status"] for n, r in runs.items()} == {"clean": "succeeded", "process": "failed"}
    assert f"run a_first: skipped: not run because process failed (run {runs['process']['run_id']})" in (
        done.stdout
    )


@pytest.mark.slow
def test_after_lines_run_in_a_chain_when_the_run_they_follow_succeeds(
    run_env: RunEnv, tmp_path: Path
) -> None:
    _analyses(run_env, report="ok", letters="ok")
    done = _cron_run_of_ok(
        run_env,
        tmp_path,
        "* * * * * ok\nafter ok fails\nafter ok report -p n 5\nafter report letters\nafter fails empty\n",
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr  # a follower failed
    runs = _by_notebook(run_env)
    # `fails` failing stops its own follower, not its sibling's chain.
    assert {n: r["status"] for n, r in runs.items()} == {
        "ok": "succeeded",
        "fails": "failed",
        "report": "succeeded",
        "letters": "succeeded",
    }
    assert runs["fails"]["after_run_id"] == runs["ok"]["run_id"]
    assert runs["report"]["after_run_id"] == runs["ok"]["run_id"]
    assert runs["letters"]["after_run_id"] == runs["report"]["run_id"]
    assert runs["report"]["counts"]["cleaned"] == 5 and {r["triggered_by"] for r in runs.values()} == {"cron"}
    assert "starting `workbench run report -p n 5` (line 3: after ok)" in done.stdout


@pytest.mark.slow
def test_a_follower_of_two_followers_runs_once_after_both_have_ended(run_env: RunEnv, tmp_path: Path) -> None:
    """A diamond: ok is followed by left and right, each followed by joined. Each run of a
    follower used to start all of its followers, so joined ran twice."""
    _analyses(run_env, left="ok", right="ok", joined="ok")
    done = _cron_run_of_ok(
        run_env,
        tmp_path,
        "* * * * * ok\nafter ok left\nafter ok right\nafter left joined\nafter right joined\n",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    runs = _by_notebook(run_env)  # one run of each notebook
    assert {n: r["status"] for n, r in runs.items()} == dict.fromkeys(
        ("ok", "left", "right", "joined"), "succeeded"
    )
    assert runs["left"]["after_run_id"] == runs["right"]["after_run_id"] == runs["ok"]["run_id"]
    assert runs["joined"]["after_run_id"] == runs["right"]["run_id"]  # the last it followed
    assert runs["joined"]["started_at"] >= max(runs["left"]["ended_at"], runs["right"]["ended_at"])
    assert done.stdout.count("starting `workbench run joined`") == 1


@pytest.mark.slow
def test_a_follower_of_two_runs_when_one_of_them_succeeded_even_if_the_last_failed(
    run_env: RunEnv, tmp_path: Path
) -> None:
    _analyses(run_env, right="ok", joined="ok")
    done = _cron_run_of_ok(
        run_env,
        tmp_path,
        "* * * * * ok\nafter ok right\nafter ok fails\nafter right joined\nafter fails joined\n",
    )
    assert done.returncode == 1, done.stdout + done.stderr  # fails failed
    runs = _by_notebook(run_env)
    assert {n: r["status"] for n, r in runs.items()} == {
        "ok": "succeeded",
        "right": "succeeded",
        "fails": "failed",
        "joined": "succeeded",
    }
    assert runs["joined"]["after_run_id"] == runs["right"]["run_id"]
    assert runs["joined"]["started_at"] >= runs["fails"]["ended_at"]
    assert "starting `workbench run joined` (line 4: after right)" in done.stdout


def test_a_run_without_the_schedule_option_runs_no_followers(run_env: RunEnv, tmp_path: Path) -> None:
    _schedule(run_env, tmp_path, "* * * * * empty\nafter empty ok\n")
    assert run_env.workbench("run", "empty", "--triggered-by", "scheduler").returncode == 0
    assert [r["notebook"] for r in run_env.runs()] == ["empty"]


@pytest.mark.slow
def test_the_scheduler_starts_a_job_that_runs_its_followers_and_announces_a_failing_one(
    run_env: RunEnv, tmp_path: Path
) -> None:
    schedule = _schedule(run_env, tmp_path, "0 0 1 1 * empty\nafter empty fails\n")
    settings = Settings(
        data_dir=run_env.data_dir,
        notebooks_dir=run_env.notebooks,
        schedule_file=schedule,
        db_api_address=run_env.env["WORKBENCH_DB_API_ADDRESS"],
        db_api_token=TOKEN,
        run_lease_seconds=4,
    )
    said: list[str] = []
    scheduler = Scheduler(settings, echo=said.append, note=lambda _: None)
    scheduler.start(Job(1, "0 0 1 1 *", ("empty",)))
    child = scheduler.children[0]
    try:
        deadline = time.monotonic() + 90
        while child.process.poll() is None:
            assert time.monotonic() < deadline, "the job and its follower did not end within 90 s"
            time.sleep(0.2)
        scheduler.reap()
    finally:
        scheduler.stop_children()
    runs = _by_notebook(run_env)
    assert runs["fails"]["after_run_id"] == runs["empty"]["run_id"]
    assert runs["fails"]["triggered_by"] == "scheduler"
    assert len(said) == 1 and said[0].startswith(f"FAILED fails run {runs['fails']['run_id']}: ValueError")
    log = (run_env.data_dir / "logs" / "scheduler-empty.log").read_text()
    assert f"run {runs['fails']['run_id']}: failed" in log


def test_schedule_show_lists_each_follower_under_the_job_it_follows(run_env: RunEnv, tmp_path: Path) -> None:
    _analyses(run_env, report="ok")
    _schedule(
        run_env,
        tmp_path,
        "5 * * * * ok\nafter ok report\nafter report fails -p colour red\n*/10 * * * * empty\n",
    )
    shown = run_env.workbench("schedule", "show", "--count", "1")
    assert shown.returncode == 2  # `-p n x` is refused, under the line that has it
    lines = shown.stdout.splitlines()[1:]
    assert [line.split("workbench run")[0].rstrip() for line in lines if "line" in line] == [
        "  line 1: 5 * * * *",
        "    line 2: after ok",
        "      line 3: after report",
        "  line 4: */10 * * * *",
    ]
    assert "        error:" in lines[3] and "n" in lines[3]


def test_a_schedule_with_a_cycle_is_refused_by_the_scheduler(run_env: RunEnv, tmp_path: Path) -> None:
    _schedule(run_env, tmp_path, "5 * * * * ok\nafter ok empty\nafter empty ok\n")
    done = run_env.workbench("scheduler", timeout=30)
    assert (
        done.returncode == 2
        and "line 2" in done.stderr
        and "cycle of followers: ok -> empty -> ok" in done.stderr
    )
