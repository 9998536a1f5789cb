"""`workbench dashboards`: the Voilà configuration it builds, and a real Voilà server started by
it: sources stripped, framing allowed to the web app's origin only, kernels told where the db-api
is, a clear error when the port is taken."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from db_api.server import RunningServer
from pipeline_lib.cli import dashboards as cli_dashboards
from pipeline_lib.settings import LIVE_DASHBOARDS_PATH, Settings
from tests.conftest import TOKEN
from tests.wire_servers import free_port


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        web_host="127.0.0.1",
        web_port=8123,
        db_api_token=SecretStr("s3cret"),
        db_api_address="0.0.0.0:6001",
        **extra,
    )


def test_only_the_web_app_may_frame_the_dashboards(tmp_path: Path) -> None:
    config = cli_dashboards.voila_config(_settings(tmp_path), "127.0.0.1", 8866, 2)
    headers = config["Voila"]["tornado_settings"]["headers"]  # type: ignore[index]
    assert headers == {"Content-Security-Policy": "frame-ancestors http://127.0.0.1:8123"}


def test_voila_serves_the_dashboards_folder_with_sources_stripped_and_kernels_preheated(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    config = cli_dashboards.voila_config(settings, "127.0.0.1", 8866, 2)
    assert config["Voila"]["root_dir"] == str(settings.notebooks_dir / "dashboards")
    assert config["Voila"]["port_retries"] == 0
    assert config["VoilaConfiguration"] == {
        "template": "workbench",
        "allow_theme_override": "NO",
        "allow_template_override": "NO",
        "strip_sources": True,
        "show_tracebacks": False,
        "preheat_kernel": True,
        "default_pool_size": 2,
    }
    assert (
        cli_dashboards.voila_config(settings, "127.0.0.1", 8866, 0)["VoilaConfiguration"]["preheat_kernel"]
        is False
    )


def test_kernels_are_reached_over_unix_sockets_in_a_short_folder(tmp_path: Path) -> None:
    config = cli_dashboards.voila_config(_settings(tmp_path), "127.0.0.1", 8866, 2)
    assert config["KernelManager"] == {"transport": "ipc"}
    root = config["Voila"]["connection_dir_root"]  # type: ignore[index]
    assert len(f"{root}/voila_12345678/kernel-{'0' * 36}-ipc-5") < 107  # a socket path's limit


def test_the_dashboards_are_signed_for_the_notary_voila_checks_them_with(tmp_path: Path) -> None:
    import nbformat
    from nbformat.sign import NotebookNotary
    from traitlets.config import Config

    settings = _settings(tmp_path)
    config = Config(cli_dashboards.voila_config(settings, "127.0.0.1", 8866, 2))
    names = [path.name for path in cli_dashboards.dashboard_notebooks(settings)]
    assert names == [
        "all_results.ipynb",
        "data_quality.ipynb",
        "models.ipynb",
        "overview.ipynb",
        "schools.ipynb",
    ]
    assert cli_dashboards.sign_dashboards(settings, config) == 5
    assert cli_dashboards.sign_dashboards(settings, config) == 0  # a restart: signed already
    notary = NotebookNotary(config=config)
    try:
        assert notary.db_file.startswith(str(tmp_path / "var" / "jupyter"))
        for path in cli_dashboards.dashboard_notebooks(settings):
            assert notary.check_signature(nbformat.read(path, as_version=4))
    finally:
        notary.close()
    secret = tmp_path / "var" / "jupyter" / "notebook_secret"
    assert secret.stat().st_mode & 0o777 == 0o600


def test_kernels_get_an_absolute_data_dir_a_reachable_db_api_and_its_token(tmp_path: Path) -> None:
    env = cli_dashboards.kernel_environment(_settings(tmp_path, k_min_group=7), "0.0.0.0")
    assert env["WORKBENCH_DB_API_ADDRESS"] == "127.0.0.1:6001"
    assert (
        env["WORKBENCH_DATA_DIR"] == str((tmp_path / "var").resolve())
        and Path(env["WORKBENCH_DATA_DIR"]).is_absolute()
    )
    assert env["WORKBENCH_DB_API_TOKEN"] == "s3cret" and env["WORKBENCH_K_MIN_GROUP"] == "7"
    assert env["VOILA_APP_IP"] == "127.0.0.1"


# -- a real server ----------------------------------------------------------------------------------


def _wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the dashboards command exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} after {seconds} s")


def _command(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipeline_lib.cli.dashboards", "--port", str(port), *extra]


@pytest.fixture
def served(sqlite_db_api: RunningServer, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`dashboards` on a free port (no preheated kernel: the first request starts one) before an
    empty db-api."""
    port = free_port()
    env = {
        **os.environ,
        "WORKBENCH_DB_API_ADDRESS": f"127.0.0.1:{sqlite_db_api.port}",
        "WORKBENCH_DB_API_TOKEN": TOKEN,
        "WORKBENCH_DATA_DIR": str(tmp_path / "var"),
        "WORKBENCH_WEB_PORT": "8123",
    }
    with (tmp_path / "voila.log").open("wb") as log:
        process = subprocess.Popen(_command(port, "--pool-size", "0"), env=env, stdout=log, stderr=log)
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}{LIVE_DASHBOARDS_PATH}", env
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.slow
def test_a_served_dashboard_shows_outputs_only_and_may_be_framed_by_the_web_app_only(
    served: tuple, tmp_path: Path
) -> None:
    url, _ = served
    response = httpx.get(f"{url}/voila/render/overview.ipynb", timeout=60)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == "frame-ancestors http://127.0.0.1:8123"
    assert "No data yet." in response.text
    assert "page.prepare()" not in response.text and "from pipeline_lib" not in response.text
    # Nothing comes from another site (Voilà's lab template takes Font Awesome from a CDN).
    assert re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", response.text) == []
    assert "spinner" in response.text  # still Voilà's lab page, loading spinner and all
    tree = httpx.get(f"{url}/voila/api/contents/", timeout=30).json()
    assert sorted(item["name"] for item in tree["content"]) == [
        "all_results.ipynb",
        "data_quality.ipynb",
        "models.ipynb",
        "overview.ipynb",
        "schools.ipynb",
    ]
    log = (tmp_path / "voila.log").read_text()
    assert "Kernel started" in log  # the log is Voilà's, and it has none of the known noise:
    assert "not trusted" not in log and "without encryption" not in log


@pytest.mark.slow
def test_a_taken_port_stops_the_command_with_a_clear_error(served: tuple) -> None:
    url, env = served
    port = httpx.URL(url).port
    assert port is not None
    result = subprocess.run(_command(port), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in result.stderr


def test_voila_serves_under_the_proxied_path_and_culls_idle_viewers(tmp_path: Path) -> None:
    settings = _settings(tmp_path).model_copy(update={"voila_idle_seconds": 120})
    config = cli_dashboards.voila_config(settings, "127.0.0.1", 8866, 1)
    assert config["Voila"]["base_url"] == f"{LIVE_DASHBOARDS_PATH}/"  # what the web app proxies
    culling = config["MappingKernelManager"]
    assert culling == {"cull_idle_timeout": 120, "cull_interval": 30, "cull_connected": True}
