"""The run record: one document in `runs` per run, written when it starts and when it ends."""

from __future__ import annotations

import datetime as dt
import functools
import secrets
import socket
import subprocess
from collections.abc import Iterable
from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import RUNS
from pipeline_lib.settings import PROJECT_DIR

RunStatus = Literal["running", "succeeded", "failed", "timed_out", "skipped"]
FINISHED: tuple[RunStatus, ...] = ("succeeded", "failed", "timed_out", "skipped")


class RunError(BaseModel):
    """Why a run did not succeed: the cell (index and execution count) and the exception."""

    cell_index: int | None = None
    execution_count: int | None = None
    exception: str
    message: str


class RunRecord(BaseModel):
    run_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")
    notebook: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    status: RunStatus = "running"
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    duration_seconds: float | None = None
    counts: dict[str, int | float] = Field(default_factory=dict)
    error: RunError | None = None
    note: str | None = None
    output_path: str | None = None
    code_version: str
    host: str
    triggered_by: str = "cli"
    # The run whose success started this one: an `after` line of the schedule, or `workbench run all`
    # (process after clean, each analysis after process). None for a run started on its own.
    after_run_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,200}$")

    @field_validator("started_at", "ended_at")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        # Stored dates come back without a zone; they were written in UTC.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value

    def finish(self, status: RunStatus, *, error: RunError | None = None) -> None:
        self.status = status
        self.error = error
        self.ended_at = now()
        self.duration_seconds = round((self.ended_at - self.started_at).total_seconds(), 3)


def now() -> dt.datetime:
    # Millisecond precision: what BSON dates keep, so a stored record reads back equal.
    stamp = dt.datetime.now(dt.UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


def new_run_id(notebook: str, started_at: dt.datetime) -> str:
    """Sortable by start time, unique across machines: `<notebook>-<UTC time>-<random>`."""
    return f"{notebook}-{started_at:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}"


def host_name() -> str:
    return socket.gethostname()


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(PROJECT_DIR), *args], capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


@functools.lru_cache
def code_version() -> str:
    """The git commit of the checkout (with `+dirty` if it has local changes), else the package version."""
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return f"git:{commit}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"package:{metadata.version('student-data-workbench')}"


def save(client: DbApiClient, record: RunRecord) -> None:
    client.put_document(RUNS, record.run_id, record.model_dump(mode="python"))


def load(document: dict[str, Any]) -> RunRecord:
    """The run record of a document of `runs` (its `_id` is the run id, left out)."""
    document = {k: v for k, v in document.items() if k != "_id"}
    return RunRecord.model_validate(document)


def load_readable(documents: Iterable[dict[str, Any]]) -> list[RunRecord]:
    """The run records of `documents`, in their order; one that does not read as a run record is
    left out, so a page of runs still shows when one stored document is damaged."""
    found = []
    for document in documents:
        try:
            found.append(load(document))
        except ValidationError:
            continue
    return found
