"""`workbench up` with a schedule whose job fails: one readable line on its output, and a webhook call."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.pipeline_lib.runs.notebooks import write_notebooks
from tests.pipeline_lib.runs.receivers import webhook_receiver
from tests.wire_servers import free_port

pytestmark = pytest.mark.slow

DASHBOARDS = Path(__file__).resolve().parents[3] / "notebooks" / "dashboards"


def test_a_failed_scheduled_run_is_one_line_of_up_and_a_webhook_call(tmp_path: Path) -> None:
    schedule = tmp_path / "crontab"
    schedule.write_text("* * * * * fails\n")
    web_port = free_port()
    notebooks = write_notebooks(tmp_path / "notebooks")
    shutil.copytree(DASHBOARDS, notebooks / "dashboards")
    with webhook_receiver() as hook:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
        env.update(
            WORKBENCH_DATA_DIR=str(tmp_path / "var"),
            WORKBENCH_DB_API_ADDRESS=f"127.0.0.1:{free_port()}",
            WORKBENCH_WEB_PORT=str(web_port),
            WORKBENCH_VOILA_PORT=str(free_port()),
            WORKBENCH_NOTEBOOKS_DIR=str(notebooks),
            WORKBENCH_VOILA_POOL_SIZE="0",  # no preheated kernels: not what this test is about
            WORKBENCH_SCHEDULE_FILE=str(schedule),
            WORKBENCH_ALERT_WEBHOOK=hook.url,
        )
        up = subprocess.Popen(
            [sys.executable, "-m", "pipeline_lib.cli", "up"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []

        def read() -> None:
            assert up.stdout is not None
            for line in up.stdout:
                lines.append(line.rstrip("\n"))

        threading.Thread(target=read, daemon=True).start()
        try:
            deadline = time.monotonic() + 150  # the next minute, plus the run
            while not any(line.startswith("FAILED") for line in lines) or not hook.calls:
                assert up.poll() is None, "\n".join(lines)
                assert time.monotonic() < deadline, "no failure announced:\n" + "\n".join(lines)
                time.sleep(0.5)
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(60)
    (call,) = hook.calls
    run_id = call["run"]["run_id"]
    (failure,) = [line for line in lines if line.startswith("FAILED")]
    assert failure == (
        f"FAILED fails run {run_id}: ValueError: bad data in the second cell "
        f"-> http://127.0.0.1:{web_port}/runs/{run_id}"
    )
    assert call["run"]["triggered_by"] == "scheduler" and call["run"]["status"] == "failed"
    # The run's own output (papermill, the traceback) stays in the log, not on the terminal.
    assert not any("Traceback" in line for line in lines)
    assert "bad data" in (tmp_path / "var" / "logs" / "scheduler-fails.log").read_text()
