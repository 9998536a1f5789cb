"""The schedule file: parsing, the cron table it installs, and schedules that really fire."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import typing
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline_lib.runs import cron_install
from pipeline_lib.runs.schedule import ScheduleError, load, parse
from pipeline_lib.settings import PROJECT_DIR, Settings
from tests.conftest import TOKEN
from tests.pipeline_lib.runs.conftest import RunEnv
from tests.pipeline_lib.runs.notebooks import write_notebooks


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


def _settings_typed(kind: type) -> set[str]:
    """The Settings fields declared as `kind` or `kind | None`."""
    return {
        name
        for name, field in Settings.model_fields.items()
        if kind in (field.annotation, *typing.get_args(field.annotation))
    }


def test_every_setting_that_may_hold_a_credential_is_kept_out_of_cron_tables() -> None:
    secrets = {f"WORKBENCH_{name.upper()}" for name in _settings_typed(SecretStr)}
    assert {"WORKBENCH_DB_API_TOKEN", "WORKBENCH_JWT_SECRET", "WORKBENCH_ALERT_SMTP_PASSWORD"} <= secrets
    # Storage URIs (mongodb://user:pass@host/...) and a webhook URL (its path is the credential).
    uris = {"WORKBENCH_MONGO_URI", "WORKBENCH_LIMITS_URI", "WORKBENCH_ALERT_WEBHOOK"}
    assert secrets | uris <= cron_install.SECRET_SETTINGS


def test_the_cron_table_leaves_out_the_limits_uri_and_says_so(tmp_path: Path) -> None:
    environ = {"WORKBENCH_LIMITS_URI": "mongodb://lim:limits-pw@db.example.org/limits"}
    text = cron_install.table(
        parse("*/10 * * * * clean\n"), Settings(data_dir=tmp_path), user="root", environ=environ
    )
    assert "limits-pw" not in text and "db.example.org" not in text
    assert "# Left out WORKBENCH_LIMITS_URI (a secret)" in text


def test_only_settings_are_carried_and_a_secrets_name_in_any_case_is_left_out(tmp_path: Path) -> None:
    # Settings reads its variables whatever their case: so is a secret's name matched.
    environ = {
        "WORKBENCH_Db_Api_Token": "mixed-case-token",
        "workbench_jwt_secret": "lower-case-secret",
        "WORKBENCH_ADMIN_PASSWORD": "a-scripts-own",  # no setting
        "WORKBENCH_k_min_group": "7",
    }
    text = cron_install.table(
        parse("*/10 * * * * clean\n"), Settings(data_dir=tmp_path), user="root", environ=environ
    )
    for secret in ("mixed-case-token", "lower-case-secret", "a-scripts-own", "ADMIN_PASSWORD"):
        assert secret not in text
    assert "WORKBENCH_K_MIN_GROUP=7" in text
    assert "Left out WORKBENCH_DB_API_TOKEN (a secret)" in text
    assert "Left out WORKBENCH_JWT_SECRET (a secret)" in text and "JWT_SECRET (a secret): a run" in text


def test_a_token_cron_runs_could_not_find_is_named_as_such(tmp_path: Path) -> None:
    # A db-api given its token in the environment writes no file, and cron's runs get no token.
    environ = {"WORKBENCH_DB_API_TOKEN": "the-token"}
    settings = Settings(data_dir=tmp_path)
    text = cron_install.table(parse("*/10 * * * * clean\n"), settings, user="root", environ=environ)
    assert "the-token" not in text
    assert "or runs started by cron will fail" in text
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db_api_token").write_text("the-token")
    text = cron_install.table(parse("*/10 * * * * clean\n"), settings, user="root", environ=environ)
    assert "Left out WORKBENCH_DB_API_TOKEN (a secret)" in text and "will fail" not in text


@pytest.mark.parametrize(
    "value",
    [
        "https://alice:portal-pw@example.org/",
        "https://alice@example.org/",
        "spark://u:portal-pw@spark.example.org:7077",
        "sc://spark.example.org:15002/;token=portal-pw",
        "https://example.org/hook?sig=portal-pw",
        "https://example.org/x?X-Amz-Signature=portal-pw",
    ],
)
def test_the_cron_table_leaves_out_any_url_that_carries_a_credential(tmp_path: Path, value: str) -> None:
    environ = {"WORKBENCH_PUBLIC_URL": value, "WORKBENCH_K_MIN_GROUP": "7"}
    text = cron_install.table(
        parse("*/10 * * * * clean\n"), Settings(data_dir=tmp_path), user="root", environ=environ
    )
    assert "portal-pw" not in text and "alice" not in text and "example.org" not in text
    assert "WORKBENCH_PUBLIC_URL=" not in text and "WORKBENCH_K_MIN_GROUP=7" in text
    assert "# Left out WORKBENCH_PUBLIC_URL: a URL with a credential" in text


def test_the_cron_table_keeps_a_url_without_credentials(tmp_path: Path) -> None:
    environ = {"WORKBENCH_PUBLIC_URL": "https://example.org/a@b", "WORKBENCH_SPARK_MASTER": "spark://h:7077"}
    text = cron_install.table(
        parse("*/10 * * * * clean\n"), Settings(data_dir=tmp_path), user="root", environ=environ
    )
    assert "WORKBENCH_PUBLIC_URL=https://example.org/a@b" in text
    assert "WORKBENCH_SPARK_MASTER=spark://h:7077" in text and "Left out" not in text


def test_every_path_setting_reaches_the_cron_table_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "where the user was"
    here.mkdir()
    monkeypatch.chdir(here)
    paths = _settings_typed(Path)
    assert {"data_dir", "notebooks_dir", "runs_dir", "schedule_file", "db_api_tls_client_key"} <= paths
    environ = {f"WORKBENCH_{name.upper()}": f"rel/{name}" for name in paths}
    settings = Settings(data_dir=here / "rel" / "data_dir")  # the settings the installing process read
    line = cron_install.table(
        parse("*/10 * * * * clean\n"), settings, user="root", environ=environ
    ).splitlines()[-1]
    for name in paths:
        assert f"WORKBENCH_{name.upper()}={shlex.quote(str(here / 'rel' / name))} " in line
    assert "=rel/" not in line


def test_a_path_setting_from_the_installing_folders_env_file_reaches_the_table_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORKBENCH_RUNS_DIR", raising=False)
    (tmp_path / ".env").write_text("WORKBENCH_RUNS_DIR=archive\n")
    text = cron_install.table(parse("*/10 * * * * clean\n"), Settings(), user="root", environ={})
    assert f"WORKBENCH_RUNS_DIR={tmp_path / 'archive'} " in text.splitlines()[-1]


FAKE_CRONTAB = """#!/bin/sh
# `crontab -l` prints the table (or fails as crontab does when there is none); `crontab -` and
# `crontab FILE` store one.
store={store}
case "$1" in
  -l) if [ -f "$store" ]; then cat "$store"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$store" ;;
  *) cat "$1" > "$store" ;;
esac
"""


def test_schedule_install_for_a_user_replaces_its_block_in_the_crontab(tmp_path: Path) -> None:
    bin_dir, here = tmp_path / "bin", tmp_path / "installing from here"
    bin_dir.mkdir()
    store = tmp_path / "crontab of the user"
    fake = bin_dir / "crontab"
    fake.write_text(FAKE_CRONTAB.format(store=shlex.quote(str(store))))
    fake.chmod(0o755)
    write_notebooks(here / "nbs")
    (here / "sched").mkdir()
    (here / "sched" / "crontab").write_text("*/10 * * * * ok\n")
    # A `.env` in the installing folder, which Settings read too.
    (here / ".env").write_text("WORKBENCH_RUNS_DIR=archive\nWORKBENCH_ALERT_SMTP_PASSWORD=dotenv-pw\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(
        PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
        WORKBENCH_SPARK_CLASS_ARCHIVE="false",
        WORKBENCH_DATA_DIR="var",
        WORKBENCH_NOTEBOOKS_DIR="nbs",
        WORKBENCH_SCHEDULE_FILE="sched/crontab",
        WORKBENCH_DB_API_TLS_CA="certs/ca.pem",
        WORKBENCH_DB_API_TOKEN="token-pw",
        WORKBENCH_LIMITS_URI="mongodb://lim:limits-pw@db.example.org/limits",
        WORKBENCH_PUBLIC_URL="https://alice:portal-pw@portal.example.org/",
        WORKBENCH_K_MIN_GROUP="7",
    )

    def install() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline_lib.cli", "schedule", "install", "--target", "user"],
            cwd=here,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "the user's crontab" in done.stdout
        assert "warning: Left out WORKBENCH_LIMITS_URI (a secret)" in done.stderr
        return store.read_text()

    first = install()  # no crontab yet: `crontab -l` fails
    assert first.startswith(f"{cron_install.BEGIN}\n") and first.endswith(f"{cron_install.END}\n")
    store.write_text(f"MAILTO=me\n0 1 * * * /usr/bin/backup\n{first}30 2 * * * /usr/bin/after\n")
    second = install()
    assert second.startswith("MAILTO=me\n0 1 * * * /usr/bin/backup\n30 2 * * * /usr/bin/after\n")
    assert second.count(cron_install.BEGIN) == 1 and second.count(cron_install.END) == 1
    assert second.endswith(first)
    assert install() == second  # installing again changes nothing
    for secret in ("token-pw", "limits-pw", "portal-pw", "alice", "dotenv-pw"):
        assert secret not in second
    assert "# Left out WORKBENCH_PUBLIC_URL: a URL with a credential" in second
    (line,) = [line for line in second.splitlines() if " run ok " in line]
    for name, relative in [
        ("DATA_DIR", "var"),
        ("NOTEBOOKS_DIR", "nbs"),
        ("SCHEDULE_FILE", "sched/crontab"),
        ("DB_API_TLS_CA", "certs/ca.pem"),
        ("RUNS_DIR", "archive"),
    ]:
        assert f"WORKBENCH_{name}={shlex.quote(str((here / relative).resolve()))} " in line
    assert "WORKBENCH_K_MIN_GROUP=7 " in line and f"cd {PROJECT_DIR} " in line


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
