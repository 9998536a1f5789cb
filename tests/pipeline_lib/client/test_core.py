"""The client core: the endpoint from settings, each face's deadlines, the run's fence."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.client.core import MIB, Endpoint
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.settings import Settings
from pipeline_lib.wire.requests import FENCE_ENV, Fence


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path, db_api_address="127.0.0.1:9", db_api_token="t", db_api_max_message_mb=8
    )


def test_the_endpoint_comes_from_the_settings(tmp_path: Path) -> None:
    assert Endpoint.from_settings(_settings(tmp_path)) == Endpoint("127.0.0.1:9", "t", 8 * MIB, None)


async def test_both_faces_connect_to_the_settings_endpoint(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with DbApiClient.from_settings(settings) as client:
        assert client.endpoint == Endpoint.from_settings(settings)
        assert (client.address, client.token) == ("127.0.0.1:9", "t")
    async with AsyncDbApiClient.from_settings(settings) as aio:
        assert aio.endpoint == client.endpoint


async def test_each_face_has_its_own_deadlines_unless_given() -> None:
    with DbApiClient("127.0.0.1:9") as client, DbApiClient("127.0.0.1:9", timeout=2) as quick:
        assert (client.timeout, client.stream_timeout, quick.timeout) == (30.0, 3600.0, 2)
    async with AsyncDbApiClient("127.0.0.1:9") as aio:
        assert (aio.timeout, aio.stream_timeout) == (10.0, 120.0)


async def test_only_the_sync_face_takes_the_runs_fence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FENCE_ENV, "run:clean:3")
    with DbApiClient.from_settings(_settings(tmp_path)) as client:
        assert client.fence == Fence("run:clean", 3)
    with DbApiClient.from_settings(_settings(tmp_path), fence=None) as unfenced:
        assert unfenced.fence is None
    async with AsyncDbApiClient.from_settings(_settings(tmp_path)) as aio:
        assert aio.fence is None  # the web app writes nothing fenced
