"""`notebooks/clean.ipynb` run by papermill against a real db-api: counts, faults, concurrency."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import papermill
import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiClient
from tests.notebooks.dirty_data import SCHOOLS, dirty_raw
from tests.processes import children

pytestmark = [pytest.mark.slow, pytest.mark.spark]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "clean.ipynb"


@pytest.fixture
def db(notebook_db: tuple[RunningServer, DbApiClient]) -> tuple[RunningServer, DbApiClient]:
    notebook_db[1].write("schools", SCHOOLS, mode="upsert", key="school_id")
    return notebook_db


def _parameters(client: DbApiClient, **extra: object) -> dict:
    # As `workbench run clean` gives them: it commits (the notebook's own default is a dry run).
    return {"db_api_address": client.address, "spark_master": "local[2]", "dry_run": False, **extra}


def _execute(output: Path, parameters: dict) -> None:
    papermill.execute_notebook(
        str(NOTEBOOK), str(output), parameters=parameters, kernel_name="python3", progress_bar=False
    )


def _assert_each_submission_once(client: DbApiClient, submitted: set[str], without_consent: set[str]) -> None:
    cleaned = client.scan("cleaned", columns=["duplicates"]).to_pylist()
    cleaned_ids = [r["_id"] for r in cleaned]
    absorbed = [i for r in cleaned for i in r["duplicates"] or []]
    quarantined = client.scan("quarantine", columns=["_id"]).column("_id").to_pylist()
    placed = cleaned_ids + absorbed + quarantined
    assert len(placed) == len(set(placed)), "a submission is in two places"
    assert set(placed) | without_consent == submitted
    assert not set(placed) & without_consent
    assert client.count("raw") == 0


def test_the_notebook_cleans_raw_exactly_once_and_reports(db: tuple, tmp_path: Path) -> None:
    _, client = db
    raw = dirty_raw(2_000)
    client.write("raw", raw, key="submission_id")
    output = tmp_path / "clean-out.ipynb"
    _execute(output, _parameters(client, batch_size=300, run_id="test-run"))
    text = output.read_text()
    for section in ("Rejects by reason", "What the cleaner changed most", "school_unknown", "decimal_comma"):
        assert section in text
    no_consent = set(raw.loc[raw["consent"] == "no", "submission_id"])
    _assert_each_submission_once(client, set(raw["submission_id"]), no_consent)
    assert client.get("cleaned", next(iter(client.scan("cleaned", limit=1).column("_id").to_pylist())))[
        "changes"
    ]


def test_a_dry_run_commits_nothing(db: tuple, tmp_path: Path) -> None:
    _, client = db
    client.write("raw", dirty_raw(300), key="submission_id")
    _execute(tmp_path / "out.ipynb", _parameters(client, dry_run=True))
    assert client.count("raw") == 315 and client.count("cleaned") == 0


def _papermill(client: DbApiClient, output: Path, **parameters: object) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "papermill",
        str(NOTEBOOK),
        str(output),
        "-k",
        "python3",
        "--no-progress-bar",
    ]
    for name, value in _parameters(client, **parameters).items():
        args += ["-p", name, str(value)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())


def test_runs_killed_at_random_points_lose_and_double_nothing(db: tuple, tmp_path: Path) -> None:
    _, client = db
    raw = dirty_raw(20_000, seed=7)
    client.write("raw", raw, key="submission_id")
    chance = random.Random(20261129)
    for attempt in range(10):
        run = _papermill(client, tmp_path / f"killed-{attempt}.ipynb", batch_size=250)
        deadline = time.monotonic() + chance.uniform(4, 40)
        kernel = None
        while time.monotonic() < deadline and run.poll() is None:
            kernel = kernel or next(iter(children(run.pid, b"ipykernel")), None)
            time.sleep(0.1)
        if kernel is not None and run.poll() is None:
            os.kill(kernel, signal.SIGKILL)
        run.kill()
        run.wait()
    final = _papermill(client, tmp_path / "final.ipynb", batch_size=1000)
    assert final.wait(timeout=600) == 0
    no_consent = set(raw.loc[raw["consent"] == "no", "submission_id"])
    _assert_each_submission_once(client, set(raw["submission_id"]), no_consent)


def test_submissions_arriving_during_a_run_are_not_lost(db: tuple, tmp_path: Path) -> None:
    _, client = db
    first, late = dirty_raw(3_000, seed=3, prefix="a"), dirty_raw(500, seed=4, prefix="b")
    client.write("raw", first, key="submission_id")
    run = _papermill(client, tmp_path / "during.ipynb", batch_size=200)

    def trickle() -> None:
        for start in range(0, len(late), 50):
            client.write("raw", late.iloc[start : start + 50], key="submission_id")
            time.sleep(0.2)

    writer = threading.Thread(target=trickle)
    time.sleep(3)
    writer.start()
    writer.join()
    assert run.wait(timeout=600) == 0
    again = _papermill(client, tmp_path / "after.ipynb", batch_size=200)
    assert again.wait(timeout=600) == 0
    both = [first, late]
    submitted = {i for frame in both for i in frame["submission_id"]}
    no_consent = {i for frame in both for i in frame.loc[frame["consent"] == "no", "submission_id"]}
    _assert_each_submission_once(client, submitted, no_consent)
