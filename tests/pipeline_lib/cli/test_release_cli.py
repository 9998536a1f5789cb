"""`workbench release show|reset`, run as a real process against a real db-api on the embedded store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import RELEASES
from pipeline_lib.process import publication
from pipeline_lib.process.job import RELEASE_ID, previous_release
from tests.conftest import TOKEN
from tests.pipeline_lib.process.test_publication import Cut, DyingClient, _doc
from tests.pipeline_lib.process.test_release_store import a_release

WORKBENCH = [sys.executable, "-m", "pipeline_lib.cli", "release"]


@pytest.fixture
def env(sqlite_db_api: RunningServer, tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose settings name the db-api and its token."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    return {
        **kept,
        "WORKBENCH_DATA_DIR": str(tmp_path),
        "WORKBENCH_DB_API_ADDRESS": f"127.0.0.1:{sqlite_db_api.port}",
        "WORKBENCH_DB_API_TOKEN": TOKEN,
    }


def _release(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*WORKBENCH, *args], env=env, capture_output=True, text=True, timeout=60)


def test_show_on_an_empty_store_says_there_is_no_release_yet(env: dict[str, str]) -> None:
    shown = _release(["show"], env)
    assert shown.returncode == 0, shown.stderr
    assert "No release yet" in shown.stdout


def test_show_counts_the_cells_and_documents_of_the_kept_release(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    sqlite_client.put_document(RELEASES, RELEASE_ID, a_release().to_dict())
    shown = _release(["show"], env)
    assert shown.returncode == 0, shown.stderr
    assert "2 cells" in shown.stdout and "1 whole document" in shown.stdout
    assert "last published 2026-11-29 06:00 UTC" in shown.stdout


def test_reset_without_yes_refuses_and_removes_nothing(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    sqlite_client.put_document(RELEASES, RELEASE_ID, a_release().to_dict())
    refused = _release(["reset"], env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert sqlite_client.get_document(RELEASES, RELEASE_ID) is not None


def test_reset_with_yes_removes_the_release_and_says_so_when_there_was_none(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    sqlite_client.put_document(RELEASES, RELEASE_ID, a_release().to_dict())
    removed = _release(["reset", "--yes"], env)
    assert removed.returncode == 0, removed.stderr
    assert "Release removed." in removed.stdout
    assert sqlite_client.get_document(RELEASES, RELEASE_ID) is None
    again = _release(["reset", "--yes"], env)
    assert again.returncode == 0, again.stderr
    assert "There was no release to remove." in again.stdout


def test_show_on_an_unreadable_release_fails_with_the_error(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    sqlite_client.put_document(RELEASES, RELEASE_ID, {**a_release().to_dict(), "cells": "garbage"})
    shown = _release(["show"], env)
    assert shown.returncode == 1
    assert f"document {RELEASE_ID!r}" in shown.stderr and "workbench release reset" in shown.stderr
    assert "Traceback" not in shown.stderr


@pytest.mark.parametrize("command", [[], ["show"], ["reset"]])
def test_every_release_command_has_help(command: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    result = _release([*command, "--help"], {**env, "WORKBENCH_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_reset_also_removes_a_publication_left_unfinished(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    """Its release would otherwise count as the kept one at the next run (`process.publication`)."""
    with DyingClient(sqlite_client, writes=0) as dying, pytest.raises(Cut):
        publication.publish(dying, RELEASE_ID, [_doc("d0", "r1")], a_release().to_dict())
    assert sqlite_client.get_document(RELEASES, RELEASE_ID) is None  # committed, not finished
    assert previous_release(sqlite_client) == a_release()
    removed = _release(["reset", "--yes"], env)
    assert removed.returncode == 0 and "Release removed." in removed.stdout, removed.stderr
    assert previous_release(sqlite_client) is None
