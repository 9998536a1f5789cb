"""Settings: paths mean one thing wherever a command starts, and children get what we resolved."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from pydantic import ValidationError

from pipeline_lib.settings import PROJECT_DIR, SecretError, Settings, child_environment, db_api_token
from pipeline_lib.spark.source import SourceOptions
from pipeline_lib.wire.requests import grpc_target


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("WORKBENCH_"):
            monkeypatch.delenv(name)


def test_the_default_data_dir_is_the_checkouts_var_wherever_we_start(
    clean_environment: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.data_dir == PROJECT_DIR / "var"
    assert settings.run_archive == PROJECT_DIR / "var" / "runs"
    assert settings.token_file == PROJECT_DIR / "var" / "secrets" / "db_api_token"


def test_a_relative_path_is_resolved_against_the_folder_the_command_started_in(
    clean_environment: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", "data")
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", "../archive")
    monkeypatch.setenv("WORKBENCH_SCHEDULE_FILE", "~/my-crontab")
    settings = Settings()
    assert settings.data_dir == tmp_path / "data"
    assert settings.run_archive == tmp_path.parent / "archive"
    assert settings.schedule_file == Path.home() / "my-crontab"


def test_children_get_the_resolved_paths_and_every_setting_we_were_given(
    clean_environment: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("WORKBENCH_DB_API_TOKEN=from-dotenv\nWORKBENCH_K_MIN_GROUP=7\n")
    monkeypatch.setenv("WORKBENCH_DATA_DIR", "data")
    monkeypatch.setenv("WORKBENCH_STALE_AFTER", "PT3H")
    env = child_environment(Settings(), {"PATH": "/usr/bin"})
    assert env["PATH"] == "/usr/bin"
    assert env["WORKBENCH_DATA_DIR"] == str(tmp_path / "data")
    assert env["WORKBENCH_NOTEBOOKS_DIR"] == str(PROJECT_DIR / "notebooks")
    assert env["WORKBENCH_DB_API_TOKEN"] == "from-dotenv"  # a child elsewhere would not find .env
    assert env["WORKBENCH_K_MIN_GROUP"] == "7" and env["WORKBENCH_STALE_AFTER"] == "10800.0"
    assert "WORKBENCH_RUNS_DIR" not in env  # unset: the child derives it from the data dir

    # A child started in another folder sees the same settings.
    elsewhere = tmp_path / "notebooks"
    elsewhere.mkdir()
    child = subprocess.run(
        [sys.executable, "-c", "from pipeline_lib.settings import *; s = Settings(); "
         "print(s.data_dir, db_api_token(s), s.k_min_group, s.stale_after.total_seconds())"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert child.stdout.split() == [str(tmp_path / "data"), "from-dotenv", "7", "10800.0"]


def test_the_spark_source_takes_the_db_api_from_its_options_never_from_settings(
    clean_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An executor's own environment and folder say nothing: only the driver's options count.
    monkeypatch.setenv("WORKBENCH_DB_API_ADDRESS", "10.9.9.9:1")
    monkeypatch.setenv("WORKBENCH_DB_API_TOKEN", "executor-token")
    options = SourceOptions.parse({"collection": "raw", "address": "127.0.0.1:5005", "token": "t"})
    assert (options.address, options.token) == ("127.0.0.1:5005", "t")
    assert SourceOptions.parse({"collection": "raw", "address": "127.0.0.1:5005"}).token is None
    with pytest.raises(ValueError, match=r"no db-api address: register it with"):
        SourceOptions.parse({"collection": "raw"})


@pytest.mark.parametrize("text", ["10800", "10800.0", "PT3H", "PT10800S"])
def test_stale_after_reads_seconds_or_iso_8601(clean_environment: None, text: str) -> None:
    assert Settings(stale_after=text).stale_after is not None
    assert Settings(stale_after=text).stale_after.total_seconds() == 10800


def test_an_empty_token_is_an_error_not_authentication_turned_off(clean_environment: None) -> None:
    with pytest.raises(ValueError, match=r"db_api_token\n.*is set but empty"):
        Settings(db_api_token="  ")
    with pytest.raises(ValueError, match=r"is set but empty"):
        Settings(jwt_secret="")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_lib.cli", "db-api", "ping"],
        env={**os.environ, "WORKBENCH_DB_API_TOKEN": ""}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: invalid settings: WORKBENCH_DB_API_TOKEN: Value error, is set but empty; "
        "unset it to use the secret generated into the data dir"
    )


def test_an_empty_secret_file_is_a_clear_error(clean_environment: None, tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db_api_token").write_text("\n")
    with pytest.raises(SecretError, match=r"db_api_token is empty; delete it"):
        db_api_token(Settings(data_dir=tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_lib.cli", "db-api", "ping"],
        env={**os.environ, "WORKBENCH_DATA_DIR": str(tmp_path)}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "is empty; delete it" in done.stderr and "Traceback" not in done.stderr


def _token_of(data_dir: str) -> str:
    return db_api_token(Settings(data_dir=Path(data_dir)))


def test_processes_starting_together_all_get_the_one_whole_generated_token(
    clean_environment: None, tmp_path: Path
) -> None:
    # Whoever asks first (db-api, web app, a run) creates it; nobody ever reads it half-written.
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        tokens = pool.map(_token_of, [str(tmp_path)] * 16)
    assert len(set(tokens)) == 1 and len(tokens[0]) >= 40
    token_file = tmp_path / "secrets" / "db_api_token"
    assert token_file.read_text() == tokens[0] + "\n"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in token_file.parent.iterdir()] == ["db_api_token"]  # no staging files left


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        ("db-api.internal:50051", "db-api.internal:50051"),  # a name: round_robin over what it resolves to
        ("10.0.0.5:50051, 10.0.0.6:50051", "ipv4:10.0.0.5:50051,10.0.0.6:50051"),
        ("[::1]:50051,[::1]:50052", "ipv6:[::1]:50051,[::1]:50052"),
    ],
)
def test_db_api_addresses_become_grpc_targets(address: str, target: str) -> None:
    settings = Settings(db_api_address=address)
    assert grpc_target(settings.db_api_address) == target


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("127.0.0.1", "is not host:port"),
        ("127.0.0.1:0", "is not host:port"),
        ("127.0.0.1:50051,", "is not host:port"),
        ("db1:50051,db2:50051", "give one DNS name that resolves to all of them"),
        ("127.0.0.1:50051,[::1]:50051", "all be IPv4 or all IPv6"),
    ],
)
def test_db_api_addresses_that_cannot_work_are_refused_with_why(address: str, says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        Settings(db_api_address=address)


def test_tls_to_a_list_of_replicas_is_refused_before_any_call() -> None:
    from pipeline_lib.client.core import Endpoint
    from pipeline_lib.client.tls import ClientTls

    tls = ClientTls(ca=b"-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ValueError, match="give one DNS name"):
        Endpoint("10.0.0.5:50051,10.0.0.6:50051", tls=tls).open_channel(
            grpc.insecure_channel, grpc.secure_channel
        )
