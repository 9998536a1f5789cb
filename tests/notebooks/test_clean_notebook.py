"""`notebooks/clean.ipynb` run by papermill against a real db-api: counts, faults, concurrency."""

from __future__ import annotations

import contextlib
import os
import random
import shlex
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
from tests.processes import descendants, running

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
    assert "pandas engine" in text  # the default, auto, for a raw this small on a local master
    no_consent = set(raw.loc[raw["consent"] == "no", "submission_id"])
    _assert_each_submission_once(client, set(raw["submission_id"]), no_consent)
    assert client.get("cleaned", next(iter(client.scan("cleaned", limit=1).column("_id").to_pylist())))[
        "changes"
    ]


def test_papermill_given_a_bool_as_text_is_refused_before_anything_is_read(db: tuple, tmp_path: Path) -> None:
    # papermill's `-p dry_run false` injects the text 'false', which Python takes as true: the
    # notebook says so, rather than silently committing nothing.
    _, client = db
    client.write("raw", dirty_raw(50), key="submission_id")
    run = _papermill(client, tmp_path / "out.ipynb", dry_run="false")
    assert run.wait(timeout=300) != 0
    text = (tmp_path / "out.ipynb").read_text()
    assert "parameter dry_run must be true or false, got 'false'" in text
    assert "-p dry_run False" in text
    assert client.count("cleaned") == 0 and client.count("raw") == 52


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


# Each run is killed at a random moment within this many seconds after its first commit landed
# (its commits of 30,000 records last longer on this machine), so every kill interrupts committing.
KILL_WITHIN = {"spark": 1.5, "pandas": 0.5}
TOP_UP_BELOW = 15_000
ENGINES = ("spark", "pandas", "pandas", "spark", "pandas", "pandas")


def _crash(run: subprocess.Popen) -> None:
    """Kill the run with everything it started (kernel, JVM, Spark workers) at once, as a power
    cut would, and wait until nothing of it writes any more."""
    family = descendants(run.pid) | {run.pid}
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.wait()
    while any(running(pid) for pid in family):
        time.sleep(0.05)


def test_runs_killed_at_random_points_lose_and_double_nothing(db: tuple, tmp_path: Path) -> None:
    _, client = db
    submitted: set[str] = set()
    no_consent: set[str] = set()
    chance = random.Random(20261129)
    interrupted, outcomes = 0, []
    for attempt, engine in enumerate(ENGINES):
        if client.count("raw") < TOP_UP_BELOW:
            # New submissions keep arriving, so no run finds raw drained by the runs before it (on
            # a busy machine a kill lands later, and four runs once committed all 30,000 records).
            more = dirty_raw(30_000, seed=7 + attempt, prefix=f"k{attempt}-")
            client.write("raw", more, key="submission_id")
            submitted |= set(more["submission_id"])
            no_consent |= set(more.loc[more["consent"] == "no", "submission_id"])
        before = client.count("raw")
        run = _papermill(client, tmp_path / f"killed-{attempt}.ipynb", batch_size=250, engine=engine)
        while run.poll() is None and client.count("raw") == before:  # until its first commit
            time.sleep(0.05)
        time.sleep(chance.uniform(0, KILL_WITHIN[engine]))
        alive = run.poll() is None
        _crash(run)
        left = client.count("raw")
        interrupted += alive and left > 0
        ended = "killed" if alive else f"exited {run.returncode}"
        outcomes.append(f"{engine}: raw {before} -> {left}, {ended}")
    assert interrupted >= 4, f"too few runs were killed while committing to prove anything: {outcomes}"
    final = _papermill(client, tmp_path / "final.ipynb", batch_size=1000)
    assert final.wait(timeout=600) == 0
    _assert_each_submission_once(client, submitted, no_consent)


def test_submissions_arriving_during_a_run_are_not_lost(db: tuple, tmp_path: Path) -> None:
    _, client = db
    first, late = dirty_raw(3_000, seed=3, prefix="a"), dirty_raw(500, seed=4, prefix="b")
    client.write("raw", first, key="submission_id")
    # Spark: its ids to delete must be the ones it read, though its plan could read `raw` again.
    run = _papermill(client, tmp_path / "during.ipynb", batch_size=200, engine="spark")

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


def test_the_readmes_papermill_command_commits(db: tuple, tmp_path: Path) -> None:
    # The README's line as a user types it in the checkout (here a folder holding its notebooks),
    # with the settings a user's shell has: the db-api's address and token in the environment.
    _, client = db
    raw = dirty_raw(300)
    client.write("raw", raw, key="submission_id")
    readme = (NOTEBOOK.parents[1] / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith(".venv/bin/papermill ")]
    words = shlex.split(line)
    (tmp_path / "notebooks").symlink_to(NOTEBOOK.parent)
    (tmp_path / "var" / "runs").mkdir(parents=True)
    papermill_bin = Path(sys.executable).parent / "papermill"
    env = {**os.environ, "WORKBENCH_DB_API_ADDRESS": client.address}
    done = subprocess.run(
        [str(papermill_bin), *words[1:], "--no-progress-bar"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / words[2]).is_file()
    no_consent = set(raw.loc[raw["consent"] == "no", "submission_id"])
    _assert_each_submission_once(client, set(raw["submission_id"]), no_consent)
