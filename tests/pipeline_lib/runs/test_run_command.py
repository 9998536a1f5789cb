"""`workbench run` as a real process against a real db-api: outcomes, records, archive, exit codes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import nbformat
import pytest

from tests.pipeline_lib.runs.conftest import RunEnv
from tests.pipeline_lib.runs.notebooks import write_notebooks
from tests.processes import children, running

pytestmark = pytest.mark.slow


def _only_record(run_env: RunEnv, notebook: str) -> dict:
    records = [r for r in run_env.runs() if r["notebook"] == notebook]
    assert len(records) == 1, records
    return records[0]


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def test_a_successful_run_is_recorded_with_its_counts_and_archived(run_env: RunEnv) -> None:
    done = run_env.workbench("run", "ok", "-p", "n", "3")
    assert done.returncode == 0, done.stderr
    record = _only_record(run_env, "ok")
    assert record["status"] == "succeeded"
    assert record["parameters"] == {"n": 3}
    assert record["counts"] == {"records_in": 30, "cleaned": 3}
    assert record["duration_seconds"] > 0 and record["ended_at"] >= record["started_at"]
    assert record["code_version"].startswith(("git:", "package:")) and record["host"]
    output = Path(record["output_path"])
    day = record["started_at"]
    assert (
        output == (run_env.data_dir / "runs" / f"{day:%Y/%m/%d}" / f"{record['run_id']}-ok.ipynb").resolve()
    )
    executed = nbformat.read(output, as_version=4)
    assert any(
        "run_id" in c.source for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])
    )
    assert f"run {record['run_id']}: succeeded" in done.stdout


def test_a_failing_cell_fails_the_run_and_names_the_cell(run_env: RunEnv) -> None:
    done = run_env.workbench("run", "fails")
    assert done.returncode == 1
    record = _only_record(run_env, "fails")
    assert record["status"] == "failed"
    assert record["error"]["exception"] == "ValueError"
    assert record["error"]["message"] == "bad data in the second cell"
    executed = nbformat.read(record["output_path"], as_version=4)
    failing = executed.cells[record["error"]["cell_index"]]
    assert "raise ValueError" in failing.source and failing.outputs[0]["output_type"] == "error"
    assert "ValueError" in done.stderr


def test_a_cell_over_the_timeout_ends_the_run_as_timed_out(run_env: RunEnv) -> None:
    done = run_env.workbench("run", "hangs", "--timeout", "2")
    assert done.returncode == 1
    record = _only_record(run_env, "hangs")
    assert record["status"] == "timed_out"
    assert record["error"]["exception"] == "CellTimeoutError"
    assert (
        "time.sleep"
        in nbformat.read(record["output_path"], as_version=4).cells[record["error"]["cell_index"]].source
    )


def test_a_required_parameter_left_out_fails_with_the_notebooks_message(run_env: RunEnv) -> None:
    done = run_env.workbench("run", "needs")
    assert done.returncode == 1
    record = _only_record(run_env, "needs")
    assert record["status"] == "failed" and "source is required" in record["error"]["message"]
    assert Path(record["output_path"]).is_file()
    assert run_env.workbench("run", "needs", "-p", "source", "/data/x.csv").returncode == 0


def test_an_unknown_parameter_or_notebook_is_a_usage_error(run_env: RunEnv) -> None:
    done = run_env.workbench("run", "ok", "-p", "colour", "red")
    # Refused before the db-api or a kernel is reached: nothing is recorded.
    assert done.returncode == 2 and "no parameter colour" in done.stderr and "n, run_id" in done.stderr
    assert run_env.runs() == []

    missing = run_env.workbench("run", "nope")
    assert missing.returncode == 2 and "no notebook 'nope'" in missing.stderr
    dangling = run_env.workbench("run", "ok", "-p", "n")
    assert dangling.returncode == 2 and "-p NAME VALUE" in dangling.stderr


def test_all_runs_clean_then_process_and_stops_at_the_first_failure(run_env: RunEnv) -> None:
    done = run_env.workbench("run", "all", "-p", "n", "2")
    assert done.returncode == 0, done.stderr
    records = sorted(run_env.runs(), key=lambda r: r["started_at"])
    assert [(r["notebook"], r["status"], r["counts"]["cleaned"]) for r in records] == [
        ("clean", "succeeded", 2),
        ("process", "succeeded", 2),
    ]
    (run_env.notebooks / "clean.ipynb").write_bytes((run_env.notebooks / "fails.ipynb").read_bytes())
    failed = run_env.workbench("run", "all")
    assert failed.returncode == 1
    assert [r["notebook"] for r in run_env.runs()].count("process") == 1


def test_a_second_run_while_one_runs_is_skipped(run_env: RunEnv) -> None:
    first = run_env.start("run", "hangs")
    try:
        _wait_for(lambda: any(r["status"] == "running" for r in run_env.runs()))
        second = run_env.workbench("run", "hangs", "--no-wait")
        assert second.returncode == 0
        skipped = [r for r in run_env.runs() if r["status"] == "skipped"]
        assert len(skipped) == 1 and "holds the lease" in skipped[0]["note"]
        assert "skipped" in second.stdout
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(60)
    # SIGTERM ends the run as failed, recorded, and frees the lease at once.
    assert first.returncode == 1
    stopped = next(r for r in run_env.runs() if r["run_id"] != skipped[0]["run_id"])
    assert stopped["status"] == "failed" and "SIGTERM" in stopped["error"]["message"]
    assert run_env.workbench("run", "hangs", "--timeout", "1").returncode == 1
    assert run_env.runs()[-1]["status"] == "timed_out"


def test_the_lease_of_a_killed_run_expires_and_the_next_run_proceeds(run_env: RunEnv) -> None:
    # Long enough that the second run surely starts while the dead run's lease still holds.
    run_env.env["WORKBENCH_RUN_LEASE_SECONDS"] = "15"
    victim = run_env.start("run", "hangs")
    _wait_for(lambda: any(r["status"] == "running" for r in run_env.runs()))
    kernels = children(victim.pid)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    for pid in kernels:  # the orphaned kernel would sleep on; it is not what this test is about
        if running(pid):
            os.kill(pid, signal.SIGKILL)
    # The lease is still held: a run that does not wait is skipped.
    assert run_env.workbench("run", "hangs", "--timeout", "1", "--no-wait").returncode == 0
    assert run_env.runs()[-1]["status"] == "skipped"
    time.sleep(15)
    assert run_env.workbench("run", "hangs", "--timeout", "1").returncode == 1
    by_status = {r["status"]: r for r in run_env.runs()}
    assert set(by_status) == {"failed", "skipped", "timed_out"}
    assert by_status["failed"]["error"]["exception"] == "Abandoned"


def test_a_runs_writes_carry_the_fence_of_its_lease(run_env: RunEnv) -> None:
    done = run_env.workbench("run", "fenced")
    assert done.returncode == 0, done.stderr
    record = _only_record(run_env, "fenced")
    written = run_env.client.get_document("processed", "fenced")
    assert written is not None and written["run_id"] == record["run_id"]
    lease, _, generation = written["fence"].rpartition(":")
    assert lease == "run:fenced" and int(generation) >= 1


def test_a_run_that_loses_its_lease_stops_and_says_why(run_env: RunEnv) -> None:
    victim = run_env.start("run", "hangs")
    try:
        _wait_for(lambda: any(r["status"] == "running" for r in run_env.runs()))
        record = _only_record(run_env, "hangs")
        holder = f"{record['host']}:{victim.pid}:{record['run_id']}"
        # What a db-api outage longer than the lease allows: another run holds it meanwhile.
        assert run_env.client.release_lease("run:hangs", holder)
        assert run_env.client.acquire_lease("run:hangs", "thief", 60).acquired
        victim.wait(30)
    finally:
        kernels = children(victim.pid)
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        for pid in kernels:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    assert victim.returncode == 1
    stopped = _only_record(run_env, "hangs")
    assert stopped["status"] == "failed" and stopped["error"]["exception"] == "Interrupted"
    assert "lease run:hangs is now held by thief" in stopped["error"]["message"]


def test_notebooks_written_by_the_helper_are_valid(tmp_path: Path) -> None:
    for path in write_notebooks(tmp_path).glob("*.ipynb"):
        nbformat.validate(nbformat.read(path, as_version=4))
