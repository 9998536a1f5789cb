"""Old runs forgotten: `workbench prune-runs` against a real db-api and a real run archive, and the
choice of what is kept, which is pure."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest

from pipeline_lib.runs import cron_install, records
from pipeline_lib.runs.executor import archive_path
from pipeline_lib.runs.records import RunRecord
from pipeline_lib.runs.retention import Run, due, to_keep
from pipeline_lib.runs.schedule import parse_schedule
from pipeline_lib.runs.scheduler import Scheduler
from pipeline_lib.settings import Settings
from tests.pipeline_lib.runs.conftest import RunEnv
from tests.processes import wait_for

NOW = dt.datetime.now(dt.UTC)


def _run(run_id: str, notebook: str, status: str, days_ago: float) -> Run:
    return Run(run_id, notebook, status, NOW - dt.timedelta(days=days_ago))


def test_each_notebooks_newest_and_newest_success_and_running_runs_are_kept() -> None:
    runs = [
        _run("c1", "clean", "succeeded", 300),
        _run("c2", "clean", "succeeded", 200),  # clean's newest success
        _run("c3", "clean", "failed", 100),  # clean's newest
        _run("p1", "process", "running", 400),  # still running (or its runner died): kept
        _run("p2", "process", "succeeded", 350),
    ]
    assert to_keep(runs) == {"c2", "c3", "p1", "p2"}


def test_a_prune_is_due_a_day_after_the_last_and_a_new_archive_starts_the_clock(tmp_path: Path) -> None:
    archive = tmp_path / "runs"
    day = dt.timedelta(days=1)
    assert not due(archive, day, now=1_000_000.0)  # no marker: set now, no prune at a system's start
    assert not due(archive, day, now=1_000_000.0 + 3600)
    assert due(archive, day, now=1_000_000.0 + 86_400)


def _stored(env: RunEnv, run_id: str, notebook: str, status: str, days_ago: float) -> Path:
    """A run record and its archived notebook (and a dashboards folder for `process`)."""
    started = records.now() - dt.timedelta(days=days_ago)
    record = RunRecord(
        run_id=run_id, notebook=notebook, status=status, started_at=started, code_version="t", host="h"
    )
    path = archive_path(Settings(data_dir=env.data_dir), record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    if notebook.endswith("process"):
        snapshots = path.with_name(f"{run_id}-dashboards")
        snapshots.mkdir()
        (snapshots / "overview.html").write_text("<p>")
    record.output_path = str(path)
    records.save(env.client, record)
    return path


def _run_ids(env: RunEnv) -> set[str]:
    return {doc["_id"] for doc in env.runs()}


def test_prune_runs_deletes_old_records_and_their_files_and_keeps_what_must_stay(run_env: RunEnv) -> None:
    # Notebook names of this test's own, so runs other tests stored (all recent) do not mix in.
    old_clean = _stored(run_env, "rt-clean-1", "rtclean", "succeeded", 120)
    kept_success = _stored(run_env, "rt-clean-2", "rtclean", "succeeded", 110)
    newest_clean = _stored(run_env, "rt-clean-3", "rtclean", "failed", 100)
    old_process = _stored(run_env, "rt-process-1", "rtprocess", "failed", 130)
    recent_process = _stored(run_env, "rt-process-2", "rtprocess", "succeeded", 5)
    orphan = old_clean.with_name("rt-gone-1-rtclean.ipynb")  # its record was deleted by hand
    orphan.write_text("{}")
    unrecorded_recent = recent_process.with_name("rt-new-1-rtclean.ipynb")
    unrecorded_recent.write_text("{}")
    # A run that wrote the current results and then failed: neither the newest nor a success.
    results_run = _stored(run_env, "rt-clean-0", "rtclean", "failed", 125)
    run_env.client.put_document("processed", "rt:result", {"key": "rt:result", "run_id": "rt-clean-0"})
    # An old day moved elsewhere and linked back: followed, it would delete what is not the archive's.
    elsewhere = run_env.data_dir.parent / "cold-storage"
    elsewhere.mkdir()
    (elsewhere / "rt-cold-1-rtclean.ipynb").write_text("{}")
    (run_env.data_dir / "runs" / "2001" / "01").mkdir(parents=True)
    (run_env.data_dir / "runs" / "2001" / "01" / "01").symlink_to(elsewhere)

    dry = run_env.workbench("prune-runs", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete 2 run records and 4 archived files" in dry.stdout, dry.stdout
    assert {"rt-clean-1", "rt-process-1"} <= _run_ids(run_env) and old_clean.exists()

    done = run_env.workbench("prune-runs")  # WORKBENCH_RUN_KEEP_DAYS: its default, 90
    assert done.returncode == 0, done.stderr
    assert "deleted 2 run records and 4 archived files" in done.stdout, done.stdout
    left = _run_ids(run_env)
    assert "rt-clean-1" not in left and "rt-process-1" not in left
    assert {"rt-clean-2", "rt-clean-3", "rt-process-2"} <= left
    for gone in (old_clean, old_process, old_process.with_name("rt-process-1-dashboards"), orphan):
        assert not gone.exists(), gone
    assert not old_process.parent.exists()  # its day's folder, emptied, is removed
    assert "rt-clean-0" in left and (elsewhere / "rt-cold-1-rtclean.ipynb").exists()
    for stays in (kept_success, newest_clean, recent_process, unrecorded_recent, results_run):
        assert stays.exists(), stays
    assert (run_env.data_dir / "runs" / ".pruned").exists()


def test_keep_days_zero_keeps_every_run(run_env: RunEnv) -> None:
    old = _stored(run_env, "rt0-clean-1", "rt0clean", "succeeded", 400)
    _stored(run_env, "rt0-clean-2", "rt0clean", "succeeded", 300)
    done = run_env.workbench("prune-runs", "--keep-days", "0")
    assert done.returncode == 0 and "kept for ever" in done.stdout
    assert old.exists() and "rt0-clean-1" in _run_ids(run_env)


def test_an_installed_cron_table_forgets_old_runs_daily_unless_kept_for_ever(tmp_path: Path) -> None:
    jobs = parse_schedule("*/10 * * * * clean\n").jobs
    text = cron_install.table(jobs, Settings(data_dir=tmp_path / "var"), user="root", environ={})
    prune = [line for line in text.splitlines() if " prune-runs " in line]
    assert len(prune) == 1 and prune[0].startswith(f"{cron_install.PRUNE_CRON} root mkdir -p ")
    assert prune[0].endswith(f"{(tmp_path / 'var').resolve()}/logs/cron-prune-runs.log 2>&1")
    assert text.splitlines()[-1].startswith("*/10 * * * * root ")  # the jobs' lines stay last
    kept = Settings(data_dir=tmp_path / "var", run_keep_days=0)
    assert " prune-runs " not in cron_install.table(jobs, kept, user="root", environ={})


def test_the_scheduler_forgets_old_runs_a_day_after_the_last_prune(
    run_env: RunEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in run_env.env.items():
        if name.startswith("WORKBENCH_"):
            monkeypatch.setenv(name, value)
    schedule = tmp_path / "crontab"
    schedule.write_text("0 0 1 1 * clean\n")  # never due in the test
    monkeypatch.setenv("WORKBENCH_SCHEDULE_FILE", str(schedule))
    settings = Settings()
    old = _stored(run_env, "rts-clean-1", "rtsclean", "succeeded", 200)
    _stored(run_env, "rts-clean-2", "rtsclean", "succeeded", 150)
    said: list[str] = []
    scheduler = Scheduler(settings, echo=said.append, note=said.append)
    scheduler.tick()  # a new archive: the clock starts, nothing pruned
    assert scheduler.pruning is None and old.exists()
    marker = settings.run_archive / ".pruned"
    day_ago = time.time() - 86_401
    os.utime(marker, (day_ago, day_ago))
    scheduler.tick()
    assert scheduler.pruning is not None
    wait_for(lambda: scheduler.pruning.process.poll() is not None, 120, "the prune to end")  # type: ignore[union-attr]
    scheduler.tick()  # reaps it; not due again for a day
    assert scheduler.pruning is None and not any("FAILED" in line for line in said), said
    assert not old.exists() and "rts-clean-1" not in _run_ids(run_env)
    assert "deleted 1 run records" in (settings.data_dir / "logs" / "scheduler-prune-runs.log").read_text()
    scheduler.stop_children()


def test_keep_days_past_a_century_is_a_usage_error_not_a_traceback(run_env: RunEnv) -> None:
    done = run_env.workbench("prune-runs", "--keep-days", "99999999999", "--dry-run")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--keep-days" in done.stderr
