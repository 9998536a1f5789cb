"""Failed runs are announced: one readable line, a webhook call and an e-mail, to real receivers."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest

from pipeline_lib.runs import alerts
from pipeline_lib.runs.alerts import failure_line, headline, should_announce, webhook_payload
from pipeline_lib.runs.records import RunError, RunRecord
from pipeline_lib.settings import Settings
from tests.pipeline_lib.runs.conftest import RunEnv
from tests.pipeline_lib.runs.receivers import smtp_server, trickling_receiver, webhook_receiver
from tests.wire_servers import free_port

# What papermill records for a Spark job whose Python worker raised: Java wrapped around Python.
SPARK_WORKER_ERROR = """An exception was thrown from the Python worker. Please see the stack trace below.
Traceback (most recent call last):
  File "/srv/.venv/lib/python3.11/site-packages/pyspark/worker.py", line 1900, in main
    process()
  File "/srv/pipeline_lib/db_requests.py", line 120, in unary
    raise DbApiCallError(message) from None
pipeline_lib.wire.requests.DbApiCallError: db-api at 127.0.0.1:50051: UNAUTHENTICATED: wrong token

\tat org.apache.spark.api.python.BasePythonRunner$ReaderIterator.handlePythonException(PythonRunner.scala:645)
\tat org.apache.spark.sql.execution.python.PythonArrowOutput$$anon$1.read(PythonArrowOutput.scala:118)
"""

JAVA_ONLY = """An error occurred while calling o123.collectToPython.
: org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 3.0 failed 1 times
\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAGScheduler.scala:2856)
Caused by: java.lang.OutOfMemoryError: Java heap space
"""


def _record(message: str, exception: str = "PythonException", **fields: object) -> RunRecord:
    values: dict = {
        "run_id": "clean-20261201T001002Z-777049",
        "notebook": "clean",
        "status": "failed",
        "started_at": dt.datetime(2026, 12, 1, 0, 10, 2, tzinfo=dt.UTC),
        "code_version": "git:abc",
        "host": "vm",
        "triggered_by": "scheduler",
        "error": RunError(cell_index=5, exception=exception, message=message),
    }
    return RunRecord.model_validate({**values, **fields})


def test_the_headline_of_a_spark_worker_error_is_the_python_exception_inside() -> None:
    error = RunError(exception="PythonException", message=SPARK_WORKER_ERROR)
    assert headline(error) == ("DbApiCallError: db-api at 127.0.0.1:50051: UNAUTHENTICATED: wrong token")


def test_the_headline_of_a_java_error_is_its_root_cause() -> None:
    error = RunError(exception="Py4JJavaError", message=JAVA_ONLY)
    assert headline(error) == "OutOfMemoryError: Java heap space"
    cause_unknown = JAVA_ONLY.split("Caused by")[0]
    error = RunError(exception="Py4JJavaError", message=cause_unknown)
    assert headline(error).startswith("SparkException: Job aborted due to stage failure")


def test_the_headline_of_a_plain_message_is_its_first_line_and_stays_short() -> None:
    assert headline(RunError(exception="ValueError", message="\nbad data\nmore")) == "ValueError: bad data"
    assert len(headline(RunError(exception="ValueError", message="x" * 5000))) == 300


def test_the_failure_line_names_notebook_run_error_and_page() -> None:
    settings = Settings(web_port=8123)
    line = failure_line(_record(SPARK_WORKER_ERROR), settings)
    assert line == (
        "FAILED clean run clean-20261201T001002Z-777049: DbApiCallError: db-api at 127.0.0.1:50051: "
        "UNAUTHENTICATED: wrong token "
        "-> http://127.0.0.1:8123/runs/clean-20261201T001002Z-777049"
    )
    assert "\n" not in line
    timed_out = failure_line(_record("a cell ran longer", "CellTimeoutError", status="timed_out"), settings)
    assert timed_out.startswith("FAILED clean run clean-20261201T001002Z-777049 (timed_out): ")


def test_behind_a_proxy_the_runs_page_is_linked_at_the_public_url() -> None:
    record = _record("x")
    for public in ("https://workbench.example.org", "https://workbench.example.org/"):
        settings = Settings(web_host="0.0.0.0", public_url=public)
        assert failure_line(record, settings).endswith(
            "-> https://workbench.example.org/runs/clean-20261201T001002Z-777049"
        )
        assert webhook_payload(record, settings)["url"] == (
            "https://workbench.example.org/runs/clean-20261201T001002Z-777049"
        )


def test_only_scheduled_failures_are_announced() -> None:
    assert should_announce(_record("x"))
    assert should_announce(_record("x", triggered_by="cron"))
    assert not should_announce(_record("x", triggered_by="cli"))  # the person at the terminal sees it
    assert not should_announce(_record("x", status="succeeded", error=None))


@pytest.mark.slow
def test_a_failed_scheduled_run_calls_the_webhook_and_sends_an_email(run_env: RunEnv) -> None:
    with webhook_receiver() as hook, smtp_server() as mailbox:
        run_env.env.update(
            WORKBENCH_ALERT_WEBHOOK=hook.url,
            WORKBENCH_ALERT_SMTP_HOST="127.0.0.1",
            WORKBENCH_ALERT_SMTP_PORT=str(mailbox.port),
            WORKBENCH_ALERT_SMTP_TO="analysts@example.org, head@example.org",
        )
        done = run_env.workbench("run", "fails", "--triggered-by", "scheduler")
        assert done.returncode == 1
        record = next(r for r in run_env.runs() if r["notebook"] == "fails")
        assert len(hook.calls) == 1
        call = hook.calls[0]
        assert call["event"] == "run.failed" and call["run"]["run_id"] == record["run_id"]
        assert call["run"]["error"]["message"] == "bad data in the second cell"
        assert call["headline"] == "ValueError: bad data in the second cell"
        assert call["url"].endswith(f"/runs/{record['run_id']}")
        assert call["summary"].startswith(f"FAILED fails run {record['run_id']}: ValueError")
        deadline = time.monotonic() + 10
        while not mailbox.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        (mail,) = mailbox.messages
        assert mail["Subject"] == f"[workbench] fails run failed: {record['run_id']}"
        assert mail["To"] == "analysts@example.org, head@example.org"
        assert "bad data in the second cell" in mail.get_payload()

        by_hand = run_env.workbench("run", "fails")
        assert by_hand.returncode == 1 and len(hook.calls) == 1  # a person's own run: told at the terminal


@pytest.mark.slow
def test_an_unreachable_webhook_leaves_the_run_recorded_as_it_ended(run_env: RunEnv) -> None:
    run_env.env["WORKBENCH_ALERT_WEBHOOK"] = "http://127.0.0.1:9/nobody-listens"
    done = run_env.workbench("run", "ok", "--triggered-by", "cron")
    assert done.returncode == 0
    failed = run_env.workbench("run", "fails", "--triggered-by", "cron")
    assert failed.returncode == 1 and "webhook not delivered" in failed.stderr
    statuses = sorted(r["status"] for r in run_env.runs())
    assert statuses == ["failed", "succeeded"]


def test_a_webhook_that_answers_slowly_is_given_up_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx's timeout is per read: an endpoint sending a byte a second held the failed run's
    process (and with `all`, the analyses after it) for as long as it liked."""
    monkeypatch.setattr(alerts, "DELIVERY_DEADLINE_SECONDS", 2.0)
    with trickling_receiver() as url:
        settings = Settings(data_dir=tmp_path, alert_webhook=url)
        announcing = threading.Thread(target=alerts.announce, args=(_record("boom"), settings), daemon=True)
        announcing.start()
        announcing.join(60)  # the endpoint would take 1,000 s
        assert not announcing.is_alive()
    assert "webhook not delivered" in caplog.text and "2 s" in caplog.text


@pytest.mark.slow
def test_a_killed_scheduled_run_is_announced_when_the_next_run_closes_it(run_env: RunEnv) -> None:
    """Its own process was killed before it could announce anything; the next run of the notebook
    (its lease expired) records it failed as `Abandoned`, and announced nothing."""
    killed = alerts.unrecorded(["ok"], "scheduler", "")  # the shape of any run record
    killed.status, killed.error, killed.ended_at, killed.duration_seconds = "running", None, None, None
    run_env.client.put_document("runs", killed.run_id, killed.model_dump(mode="python"))
    with webhook_receiver() as hook:
        run_env.env["WORKBENCH_ALERT_WEBHOOK"] = hook.url
        done = run_env.workbench("run", "ok")  # a person's run: its own success is not announced
        assert done.returncode == 0, done.stderr
    (call,) = hook.calls
    assert call["event"] == "run.failed" and call["run"]["run_id"] == killed.run_id
    assert call["run"]["error"]["exception"] == "Abandoned"
    closed = run_env.client.get_document("runs", killed.run_id)
    assert closed is not None and closed["status"] == "failed"


@pytest.mark.slow
def test_a_scheduled_run_the_db_api_cannot_record_is_announced(run_env: RunEnv) -> None:
    """It exits 1 with a line on its terminal, which nobody watches under cron or the scheduler."""
    with webhook_receiver() as hook:
        run_env.env.update(
            WORKBENCH_ALERT_WEBHOOK=hook.url, WORKBENCH_DB_API_ADDRESS=f"127.0.0.1:{free_port()}"
        )
        failed = run_env.workbench("run", "ok", "--triggered-by", "cron")
        by_hand = run_env.workbench("run", "ok")
    assert failed.returncode == 1 and "cannot record the run" in failed.stderr
    assert by_hand.returncode == 1
    (call,) = hook.calls  # a person's run: told at the terminal only
    assert call["event"] == "run.failed" and call["run"]["triggered_by"] == "cron"
    assert call["run"]["notebook"] == "ok" and call["headline"].startswith("NotRecorded: the run could not")
    assert call["url"] is None and "->" not in call["summary"]  # it has no page
