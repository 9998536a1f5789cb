"""The schedule file: parsing, the cron table it installs, and schedules that really fire."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pipeline_lib.runs import cron_install
from pipeline_lib.runs.schedule import ScheduleError, load, parse
from pipeline_lib.settings import PROJECT_DIR, Settings
from tests.conftest import TOKEN
from tests.pipeline_lib.runs.conftest import RunEnv


def test_the_shipped_schedule_cleans_every_ten_minutes_and_processes_hourly() -> None:
    jobs = load(PROJECT_DIR / "schedules" / "crontab")
    assert [(j.cron, j.args) for j in jobs] == [("*/10 * * * *", ("clean",)), ("5 * * * *", ("process",))]
    start = dt.datetime(2026, 1, 1, 12, 3)
    assert jobs[0].next_times(start, 2) == [dt.datetime(2026, 1, 1, 12, 10), dt.datetime(2026, 1, 1, 12, 20)]
    assert jobs[1].next_times(start) == [dt.datetime(2026, 1, 1, 12, 5)]


def test_jobs_keep_their_options_and_nicknames_work() -> None:
    jobs = parse("# comment\n\n@hourly  process -p seed 7   # trailing comment\n0 2 * * 1-5 all\n")
    assert [(j.line, j.cron, j.command) for j in jobs] == [
        (3, "@hourly", "process -p seed 7"),
        (4, "0 2 * * 1-5", "all"),
    ]


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("61 * * * * clean", "not a valid cron time"),
        ("* * * clean", "not a valid cron time"),
        ("*/5 * * * *", "no job after the cron time"),
        ("@often clean", "unknown nickname"),
        ("* * * * * -p a 1", "must start with a notebook name"),
        ('* * * * * clean -p "a', "No closing quotation"),
        # Dates that never come: croniter raised while planning, which stopped the scheduler and
        # with it `workbench up`, and made the results API answer 500.
        ("0 0 31 2 * clean", "never comes"),
        ("0 0 30 2 * clean", "never comes"),
        # croniter's extensions: Debian's cron refuses them, and then ignores every line of the file.
        ("0 0 L * * process", "Debian's cron does not know"),
        ("0 0 * * 5L process", "Debian's cron does not know"),
        ("0 0 15W * * process", "Debian's cron does not know"),
        ("0 0 ? * * process", "Debian's cron does not know"),
        ("R * * * * clean", "Debian's cron does not know"),
        ("H * * * * clean", "Debian's cron does not know"),
        ("0 24 * * * clean", "not a valid cron time"),
        ("0 0 0 * * clean", "not a valid cron time"),
        ("0 0 * * 8 clean", "not a valid cron time"),
        ("5-1 * * * * clean", "not a valid cron time"),
        ("*/0 * * * * clean", "not a valid cron time"),
        ("5/10 * * * * clean", "a step needs \\* or a range"),
        ("\u00b2 * * * * clean", "Debian's cron does not know"),  # a superscript two: int() raised
    ],
)
def test_a_malformed_line_is_an_error_naming_the_line(line: str, complaint: str) -> None:
    with pytest.raises(ScheduleError, match=rf"crontab, line 2: .*{complaint}"):
        parse(f"*/10 * * * * clean\n{line}\n", "crontab")


@pytest.mark.parametrize(
    "cron",
    ["0 0 29 2 *", "*/15 9-17 * * mon-fri", "0,30 * 1-15/2 jan,jul sun", "5 4 * * 7", "0 0 * * 0-6/2"],
)
def test_times_debians_cron_knows_are_taken(cron: str) -> None:
    (job,) = parse(f"{cron} clean\n", "crontab")
    assert job.cron == cron and job.next_times(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


def test_the_cron_table_carries_absolute_paths_settings_and_logs_but_no_secrets(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    environ = {
        "WORKBENCH_DB_API_ADDRESS": "127.0.0.1:6000",
        "WORKBENCH_DB_API_TOKEN": "s3cret",
        "WORKBENCH_MONGO_URI": "mongodb://u:pw@h",
        "WORKBENCH_ALERT_SMTP_PASSWORD": "mail-pw",
        "WORKBENCH_ALERT_WEBHOOK": "https://hooks.example.org/T0/B0/hook-secret",
        "WORKBENCH_NOTEBOOKS_DIR": "/srv/my notebooks",
        "HOME": "/root",
    }
    jobs = parse("*/10 * * * * clean -p note 50%\n")
    text = cron_install.table(jobs, settings, user="root", environ=environ)
    job_line = text.splitlines()[-1]
    assert job_line.startswith("*/10 * * * * root mkdir -p ")
    assert f"cd {PROJECT_DIR}" in job_line and "WORKBENCH_DB_API_ADDRESS=127.0.0.1:6000" in job_line
    assert f"WORKBENCH_DATA_DIR={(tmp_path / 'var').resolve()}" in job_line
    assert "WORKBENCH_NOTEBOOKS_DIR='/srv/my notebooks'" in job_line
    assert "run clean -p note 50\\% --triggered-by cron >> " in job_line  # cron's % escaped
    assert "s3cret" not in text and "pw@h" not in text and "HOME" not in text
    assert "mail-pw" not in text and "hook-secret" not in text
    assert f"{(tmp_path / 'var').resolve()}/logs/cron-clean.log 2>&1" in job_line
    assert "PATH=" in text and "SHELL=/bin/sh" in text


def test_the_cron_table_refuses_line_breaks_and_copies_only_shell_names(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    jobs = parse("*/10 * * * * clean\n")
    hostile = {"WORKBENCH_K_MIN_GROUP": "5\n* * * * * root touch /tmp/pwned"}
    with pytest.raises(ValueError, match=r"WORKBENCH_K_MIN_GROUP holds a line break"):
        cron_install.table(jobs, settings, user="root", environ=hostile)
    odd_name = {"WORKBENCH_X;touch /tmp/pwned;Y": "1", "WORKBENCH_K_MIN_GROUP": "7"}
    text = cron_install.table(jobs, settings, user="root", environ=odd_name)
    assert "pwned" not in text and "WORKBENCH_K_MIN_GROUP=7" in text
    assert len(text.splitlines()) == 6  # two comments, SHELL, PATH, the daily prune-runs and the one job


@pytest.mark.slow
def test_the_foreground_scheduler_runs_due_jobs_and_announces_a_failure(
    run_env: RunEnv, tmp_path: Path
) -> None:
    schedule = tmp_path / "crontab"
    schedule.write_text("* * * * * ok -p n 4\n* * * * * fails\n")
    run_env.env["WORKBENCH_SCHEDULE_FILE"] = str(schedule)
    shown = run_env.workbench("schedule", "show")
    assert shown.returncode == 0 and "workbench run ok -p n 4" in shown.stdout
    scheduler = run_env.start("scheduler")
    try:
        deadline = time.monotonic() + 130
        while {r["status"] for r in run_env.runs()} != {"succeeded", "failed"}:
            assert time.monotonic() < deadline, "the scheduler ran nothing within 130 s"
            assert scheduler.poll() is None, scheduler.stderr.read() if scheduler.stderr else ""
            time.sleep(1)
        time.sleep(3)  # a tick to see the finished child
    finally:
        scheduler.send_signal(signal.SIGTERM)
        out, err = scheduler.communicate(timeout=60)
    record = next(r for r in run_env.runs() if r["status"] == "succeeded")
    assert record["triggered_by"] == "scheduler" and record["counts"]["cleaned"] == 4
    assert scheduler.returncode == 0
    # One line per failed run on standard output, nothing else; the runs' own output in logs.
    failed = next(r for r in run_env.runs() if r["status"] == "failed")
    assert out.splitlines() == [
        f"FAILED fails run {failed['run_id']}: ValueError: bad data in the second cell "
        f"-> http://127.0.0.1:8000/runs/{failed['run_id']}"
    ]
    assert "starting `workbench run fails`" in err
    log = (run_env.data_dir / "logs" / "scheduler-fails.log").read_text()
    assert f"run {failed['run_id']}: failed" in log


def test_the_scheduler_refuses_a_malformed_schedule(run_env: RunEnv, tmp_path: Path) -> None:
    schedule = tmp_path / "crontab"
    schedule.write_text("*/10 * * * * clean\n99 * * * * ok\n")
    run_env.env["WORKBENCH_SCHEDULE_FILE"] = str(schedule)
    done = run_env.workbench("scheduler", timeout=30)
    assert done.returncode == 2 and "line 2" in done.stderr and "not a valid cron time" in done.stderr


def _cron_running() -> bool:
    return subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("cron") is None, reason="needs root and Debian's cron")
def test_the_installed_crontab_fires_under_debians_cron(run_env: RunEnv, tmp_path: Path) -> None:
    schedule = tmp_path / "crontab"
    schedule.write_text("* * * * * ok -p n 5\n")
    run_env.env["WORKBENCH_SCHEDULE_FILE"] = str(schedule)
    # cron passes no secrets: the run reads the db-api token from the data directory, as in production.
    token_file = run_env.data_dir / "secrets" / "db_api_token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(TOKEN)
    del run_env.env["WORKBENCH_DB_API_TOKEN"]
    name = f"workbench-test-{uuid.uuid4().hex[:8]}"
    installed = run_env.workbench("schedule", "install", "--target", "cron.d", "--name", name)
    assert installed.returncode == 0, installed.stderr
    cron_file = Path("/etc/cron.d") / name
    daemon = None if _cron_running() else subprocess.Popen(["cron", "-f"])
    try:
        assert oct(cron_file.stat().st_mode & 0o777) == "0o644"
        deadline = time.monotonic() + 140
        while not any(r["status"] == "succeeded" for r in run_env.runs()):
            assert time.monotonic() < deadline, "cron ran nothing within 140 s; log: " + "".join(
                p.read_text() for p in (run_env.data_dir / "logs").glob("*.log")
            )
            time.sleep(1)
    finally:
        cron_file.unlink(missing_ok=True)
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)
    record = next(r for r in run_env.runs() if r["status"] == "succeeded")
    assert record["triggered_by"] == "cron" and record["counts"]["cleaned"] == 5
    assert "run ok-" in (run_env.data_dir / "logs" / "cron-ok.log").read_text()


def test_a_reloaded_schedule_with_a_job_run_would_refuse_keeps_the_previous_one(tmp_path: Path) -> None:
    from pipeline_lib.cli.runs import schedule_refusals
    from pipeline_lib.runs.scheduler import Scheduler

    schedule = tmp_path / "crontab"
    schedule.write_text("*/10 * * * * clean\n")
    settings = Settings(data_dir=tmp_path / "var", schedule_file=schedule)
    said: list[str] = []
    check = lambda read: schedule_refusals(read, settings)  # noqa: E731
    scheduler = Scheduler(settings, echo=said.append, note=said.append, check=check)
    schedule.write_text("*/10 * * * * clean\n5 * * * * process -p seed abc\n")
    os.utime(schedule, (time.time() + 5, time.time() + 5))
    scheduler._reload_if_changed()
    assert [job.command for job in scheduler.jobs] == ["clean"]
    assert "schedule not reloaded, keeping the previous one" in said[-1] and "line 2" in said[-1]
    schedule.write_text("*/10 * * * * clean\n5 * * * * process -p seed 3\n")
    os.utime(schedule, (time.time() + 10, time.time() + 10))
    scheduler._reload_if_changed()
    assert [job.command for job in scheduler.jobs] == ["clean", "process -p seed 3"]
