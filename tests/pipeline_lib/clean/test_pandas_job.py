"""The pandas clean's pause of the cyclic garbage collector leaves it as it found it; its commits,
pipelined, place every chunk, and a failed one is raised with the ones before it kept."""

from __future__ import annotations

import gc
import signal
import threading
import time

import pandas as pd
import pytest

from pipeline_lib.clean import commits, pandas_job
from pipeline_lib.clean.pandas_job import commit_pipelined, cyclic_collector_paused
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.wire.requests import DbApiCallError


def test_the_collector_is_off_inside_and_back_on_after_even_on_an_error() -> None:
    assert gc.isenabled()
    with cyclic_collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), cyclic_collector_paused():
        raise RuntimeError("the clean failed")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with cyclic_collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def _raw(n: int) -> pd.DataFrame:
    return pd.DataFrame({"submission_id": [f"r{i:03d}" for i in range(n)], "v": ["1"] * n})


def test_pipelined_commits_place_every_chunk_of_every_part(sqlite_client: DbApiClient) -> None:
    sqlite_client.write("raw", _raw(25), key="submission_id")
    quarantine = pd.DataFrame({"submission_id": [f"r{i:03d}" for i in range(10)], "reasons": [[]] * 10})
    no_consent = pd.DataFrame({"submission_id": [f"r{i:03d}" for i in range(10, 13)]})
    cleaned = pd.DataFrame(
        {"submission_id": [f"r{i:03d}" for i in range(13, 24)], "duplicates": [[]] * 10 + [["r024"]]}
    )
    parts = [(quarantine, "quarantine"), (no_consent, "raw_ids"), (cleaned, "cleaned")]
    assert commit_pipelined(sqlite_client, parts, size=3) == 25  # 4 + 1 + 4 calls
    assert sqlite_client.count("raw") == 0
    assert (sqlite_client.count("quarantine"), sqlite_client.count("cleaned")) == (10, 11)


def test_a_failed_commit_is_raised_and_the_chunks_before_it_stay_committed(
    sqlite_client: DbApiClient,
) -> None:
    sqlite_client.write("raw", _raw(12), key="submission_id")
    ids = [f"r{i:03d}" for i in range(12)]
    ids[7] = ""  # an id the db-api refuses, in the third chunk of three rows
    cleaned = pd.DataFrame({"submission_id": ids, "duplicates": [[]] * 12})
    with pytest.raises(DbApiCallError, match="submission_id must be 1 to"):
        commit_pipelined(sqlite_client, [(cleaned, "cleaned")], size=3)
    stored = {doc["_id"] for doc in sqlite_client.list_documents("cleaned", limit=100)}
    assert {f"r{i:03d}" for i in range(6)} <= stored  # the chunks before it
    assert not {f"r{i:03d}" for i in range(6, 9)} & stored  # the refused chunk, atomically
    assert len(stored) <= 9  # at most the one chunk in flight beside it


@pytest.mark.parametrize("chunks", [1, 2])
@pytest.mark.parametrize("on_thread", ["main", "other"])
def test_an_interrupt_is_raised_without_waiting_for_the_call_in_flight(
    on_thread: str, chunks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in a notebook stops the clean at once; the call in flight ends on its own, also when
    it is the only one (the one being waited for). The kernel's signal may land on any of its
    threads (then the handler waits for the main thread to run Python): here on the main thread,
    or on the commit thread itself."""
    release, started, finished = threading.Event(), threading.Event(), threading.Event()

    def slow_commit(client: object, chunk: object, part: str) -> int:
        started.set()
        if on_thread == "other":
            time.sleep(0.3)
            signal.pthread_kill(threading.get_ident(), signal.SIGALRM)
        release.wait(10)
        finished.set()
        return 1

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commits, "commit_chunk", slow_commit)
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        if on_thread == "main":
            signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            commit_pipelined(object(), [(_raw(chunks), "raw_ids")], size=1)  # type: ignore[arg-type]
        assert started.is_set() and not finished.is_set()  # raised while the call was still running
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        release.set()


def test_raw_is_read_as_text_with_none_for_what_is_missing(sqlite_client: DbApiClient) -> None:
    stored = {"_id": "a", "submission_id": "a", "age": 15, "ses": 0.5, "sex": "female"}
    sqlite_client.insert_one("raw", stored)
    sqlite_client.insert_one("raw", {"_id": "b", "submission_id": "b", "age": None, "consent": True})
    frame = pandas_job.read_raw(sqlite_client).set_index("submission_id")
    assert list(frame.columns) == pandas_job.RAW_TEXT.names[1:]
    assert all(pd.api.types.is_object_dtype(dtype) for dtype in frame.dtypes)
    assert frame.loc["a", ["age", "ses", "sex"]].tolist() == ["15", "0.5", "female"]
    assert frame.loc["b", "consent"] == "true"
    # Missing, stored as null, or never sent: None, as the rules expect, never NaN.
    assert [frame.loc["b", "age"], frame.loc["b", "sex"], frame.loc["a", "consent"]] == [None] * 3
