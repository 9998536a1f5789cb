"""`after` lines of the schedule: parsed, chained, refused when they could never run or loop, and
carried into the installed cron table."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.runs import cron_install
from pipeline_lib.runs.schedule import ScheduleError, load, parse, parse_schedule, runs_of
from pipeline_lib.settings import PROJECT_DIR, Settings
from tests.processes import python_output

CHAINED = """\
*/10 * * * *  clean
5 * * * *     process
after process   report -p seed 3   # a comment
after report    letters
after clean     tidy
"""


def test_after_lines_are_followers_and_the_timed_jobs_stay_as_they_were() -> None:
    schedule = parse_schedule(CHAINED, "crontab")
    assert [(j.line, j.cron, j.command) for j in schedule.jobs] == [
        (1, "*/10 * * * *", "clean"),
        (2, "5 * * * *", "process"),
    ]
    assert [(f.line, f.after, f.command, f.when) for f in schedule.followers] == [
        (3, "process", "report -p seed 3", "after process"),
        (4, "report", "letters", "after report"),
        (5, "clean", "tidy", "after clean"),
    ]
    # What the scheduler plans, freshness reads and cron installs: the timed lines only.
    assert parse(CHAINED) == schedule.jobs


def test_a_chain_lists_every_follower_under_the_job_it_follows_with_its_depth() -> None:
    schedule = parse_schedule(CHAINED)
    process = schedule.jobs[1]
    assert [(depth, f.notebook) for depth, f in schedule.chain(runs_of(process))] == [
        (1, "report"),
        (2, "letters"),
    ]
    assert [f.notebook for f in schedule.following("report")] == ["letters"]


def test_a_job_that_runs_all_is_followed_by_the_followers_of_every_notebook_it_runs() -> None:
    schedule = parse_schedule(
        "0 2 * * * all\nafter clean tidy\nafter gender_gap memo\n", analyses=["gender_gap"]
    )
    all_job = schedule.jobs[0]
    assert runs_of(all_job, ["gender_gap"]) == ("clean", "process", "gender_gap")
    assert [f.notebook for _, f in schedule.chain(runs_of(all_job, ["gender_gap"]))] == ["tidy", "memo"]


def test_a_follower_of_an_analysis_run_by_all_is_accepted_when_the_analyses_are_not_known() -> None:
    assert len(parse_schedule("0 2 * * * all\nafter gender_gap memo\n").followers) == 1


@pytest.mark.parametrize(
    ("text", "line", "complaint"),
    [
        ("after\n", 2, "`after` needs the notebook it follows, then the job"),
        ("after process\n", 2, r"no job after `after process`"),
        ("after process -p seed 3\n", 2, "must start with a notebook name"),
        ("after all report\n", 2, "`after all` is not allowed"),
        ("after process all\n", 2, "runs one notebook, not `all`"),
        ("after ../etc report\n", 2, "'../etc' is not a notebook name"),
        ("after nightly report\n", 2, "no line of the schedule runs 'nightly'"),
        (
            "after report letters\nafter letters report\n",
            2,
            r"cycle of followers: report -> letters -> report",
        ),
        ("after loop loop\n", 2, r"cycle of followers: loop -> loop"),
        ("after process a\nafter a b\nafter b a\n", 3, r"cycle of followers: a -> b -> a"),
        ("@often report\n", 2, "unknown nickname .*or `after NOTEBOOK`"),
    ],
)
def test_an_after_line_that_cannot_run_is_an_error_naming_the_file_and_line(
    text: str, line: int, complaint: str
) -> None:
    with pytest.raises(ScheduleError, match=rf"crontab, line {line}: .*{complaint}"):
        parse(f"5 * * * * process\n{text}", "crontab")


def test_a_follower_of_an_analysis_all_does_not_run_is_refused_when_the_analyses_are_known() -> None:
    with pytest.raises(ScheduleError, match=r"crontab, line 2: no line of the schedule runs 'gap'"):
        parse("0 2 * * * all\nafter gap memo\n", "crontab", analyses=["gender_gap"])


def test_the_shipped_schedule_reads_with_its_commented_example() -> None:
    schedule = parse_schedule((PROJECT_DIR / "schedules" / "crontab").read_text())
    assert [j.notebook for j in schedule.jobs] == ["clean", "process"]
    assert load(PROJECT_DIR / "schedules" / "crontab") == schedule.jobs


def test_with_after_lines_every_cron_line_runs_its_followers_from_the_schedule_file(tmp_path: Path) -> None:
    schedule_file = tmp_path / "my crontab"
    settings = Settings(data_dir=tmp_path / "var", schedule_file=schedule_file)
    schedule = parse_schedule(CHAINED)
    text = cron_install.table(schedule.jobs, settings, user=None, environ={}, followers=schedule.followers)
    job_lines = text.splitlines()[5:]  # after the comments, SHELL, PATH and the daily prune-runs
    assert len(job_lines) == 2  # followers get no line of their own
    for line in job_lines:
        assert f"--followers-from '{schedule_file.resolve()}' --triggered-by cron >> " in line
    plain = cron_install.table(schedule.jobs, settings, user=None, environ={})
    assert "--followers-from" not in plain


def test_a_follower_that_all_already_ran_after_its_upstream_is_not_run_again(tmp_path: Path) -> None:
    """With `@yearly all` and `after clean process`, one `all` ran process, then process again as
    the clean's follower (review)."""
    import datetime as dt

    from pipeline_lib.runs.records import RunRecord
    from pipeline_lib.runs.scheduler import run_followers
    from pipeline_lib.settings import Settings

    schedule = tmp_path / "crontab"
    schedule.write_text("@yearly all\nafter clean process\n")

    def record(notebook: str, run_id: str) -> RunRecord:
        return RunRecord.model_validate({
            "run_id": run_id, "notebook": notebook, "status": "succeeded", "code_version": "git:abc",
            "started_at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC), "host": "vm", "triggered_by": "scheduler",
        })  # fmt: skip

    said: list[str] = []
    done = [record("clean", "clean-1"), record("process", "process-1")]
    settings = Settings(data_dir=tmp_path / "var", schedule_file=schedule)
    assert run_followers(done, schedule, settings, triggered_by="scheduler", echo=said.append)
    assert said == [
        "run clean-1: `workbench run process` (line 2: after clean) not started: process ran after it already"
    ]


def test_a_follower_with_options_of_its_own_still_runs_after_all(tmp_path: Path) -> None:
    import datetime as dt

    from pipeline_lib.runs.records import RunRecord
    from pipeline_lib.runs.scheduler import run_followers
    from pipeline_lib.settings import Settings
    from tests.wire_servers import free_port

    schedule = tmp_path / "crontab"
    schedule.write_text("@yearly all\nafter clean process -p seed 3\n")

    def record(notebook: str, run_id: str, status: str) -> RunRecord:
        return RunRecord.model_validate({
            "run_id": run_id, "notebook": notebook, "status": status, "code_version": "git:abc",
            "started_at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC), "host": "vm", "triggered_by": "scheduler",
        })  # fmt: skip

    said: list[str] = []
    done = [record("clean", "clean-1", "succeeded"), record("process", "process-1", "succeeded")]
    nobody = f"127.0.0.1:{free_port()}"  # no db-api there: the follower starts, then fails
    settings = Settings(data_dir=tmp_path / "var", schedule_file=schedule, db_api_address=nobody)
    run_followers(done, schedule, settings, triggered_by="scheduler", echo=said.append)
    assert said[0] == "run clean-1: starting `workbench run process -p seed 3` (line 2: after clean)"


_FOLLOW_WHILE_SIGNALLED = """
import signal, sys, threading, time
from pathlib import Path
from pipeline_lib.runs.scheduler import _follow
from pipeline_lib.settings import Settings

follower = [sys.executable, "-c", "import time; time.sleep(60)"]

def sigterm_from_another_thread():
    time.sleep(1)  # the follower is running
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # its handler is run on this thread

threading.Thread(target=sigterm_from_another_thread).start()
print(_follow(follower, Settings(data_dir=Path(sys.argv[1]))))
"""


def test_a_sigterm_that_lands_on_another_thread_is_passed_on_to_the_running_follower(tmp_path: Path) -> None:
    """A signal sent to `workbench run` may run its handler on any of its threads; the main thread,
    waiting for the follower, still passes it on (and starts nothing more) instead of waiting 60 s."""
    assert python_output(_FOLLOW_WHILE_SIGNALLED, str(tmp_path), timeout=30).strip() == "None"
