"""The `workbench` command line, run as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.users import verify_password
from pipeline_lib.parent_watch import command_line
from tests.certificates import CertificateAuthority
from tests.conftest import TOKEN
from tests.processes import (
    descendants,
    non_loopback_ipv4,
    refuses,
    running,
    signal_another_thread,
)
from tests.wire_servers import free_port

WORKBENCH = [sys.executable, "-m", "pipeline_lib.cli"]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    return {**env, "WORKBENCH_DATA_DIR": str(data_dir)}


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*WORKBENCH, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["db-api"],
        ["db-api", "ping"],
        ["web"],
        ["up"],
        ["users"],
        ["users", "add"],
        ["users", "list"],
        ["run"],
        ["schedule"],
        ["schedule", "show"],
        ["schedule", "install"],
        ["scheduler"],
        ["lab"],
        ["demo"],
    ],
)
def test_every_command_has_help(command: list[str], tmp_path: Path) -> None:
    result = _run([*command, "--help"], _env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """`workbench db-api` on a free port, with a token it generates itself on first start."""
    port = free_port()
    env = _env(tmp_path)
    process = subprocess.Popen(
        [*WORKBENCH, "db-api", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    for _ in range(150):
        if _run(["db-api", "ping", "--address", f"127.0.0.1:{port}", "--timeout", "2"], env).returncode == 0:
            break
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.2)
    yield port, env
    process.terminate()
    assert process.wait(timeout=15) == 0


@pytest.mark.slow
def test_db_api_stops_on_a_sigterm_that_lands_on_another_thread(tmp_path: Path) -> None:
    """A signal sent to the process may run its handler on any thread; the main thread, waiting
    for it, must still notice (CI once saw a db-api that never stopped after SIGTERM)."""
    port = free_port()
    env = _env(tmp_path)
    process = subprocess.Popen(
        [*WORKBENCH, "db-api", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(150):
            ping = ["db-api", "ping", "--address", f"127.0.0.1:{port}", "--timeout", "2"]
            if _run(ping, env).returncode == 0:
                break
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.2)
        else:
            pytest.fail("the db-api did not answer within 30 s")
        signal_another_thread(process.pid, signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert "db-api stopping" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
def test_ping_reports_a_ready_service_using_the_generated_token(
    served: tuple[int, dict[str, str]], tmp_path: Path
) -> None:
    port, env = served
    token_file = tmp_path / "secrets" / "db_api_token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    result = _run(["db-api", "ping", "--address", f"127.0.0.1:{port}"], env)
    assert result.returncode == 0, result.stderr
    assert "SERVING" in result.stdout and "store reachable" in result.stdout
    wrong = _run(["db-api", "ping", "--address", f"127.0.0.1:{port}"], {**env, "WORKBENCH_DB_API_TOKEN": "x"})
    assert wrong.returncode == 1 and "UNAUTHENTICATED" in wrong.stderr


@pytest.mark.slow
def test_a_taken_port_is_a_clear_error(served: tuple[int, dict[str, str]]) -> None:
    port, env = served
    result = _run(["db-api", "--port", str(port)], env)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({}, "WORKBENCH_MONGO_URI or WORKBENCH_LIMITS_URI"),  # memory: each worker would count alone
        ({"WORKBENCH_LIMITS_URI": "memory://"}, "a session signed out on one would still work"),
        ({"WORKBENCH_LIMITS_URI": "nosuch://host"}, "WORKBENCH_LIMITS_URI 'nosuch://host'"),
        ({"WORKBENCH_LIMITS_URI": "async+memory://"}, "not async+"),
    ],
)
def test_web_workers_that_could_not_share_their_counts_are_refused(
    tmp_path: Path, settings: dict[str, str], says: str
) -> None:
    port = free_port()
    result = _run(["web", "--workers", "2", "--port", str(port)], {**_env(tmp_path), **settings})
    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    assert refuses("127.0.0.1", port)


@pytest.mark.parametrize(
    ("command", "says"),
    [(["db-api"], "start each with its --host and --port"), (["up"], "`workbench up` starts one db-api")],
)
def test_a_list_of_db_api_replicas_needs_each_started_on_its_own(
    tmp_path: Path, command: list[str], says: str
) -> None:
    env = {**_env(tmp_path), "WORKBENCH_DB_API_ADDRESS": "127.0.0.1:50061,127.0.0.1:50062"}
    result = _run(command, env)
    assert result.returncode == 2 and says in result.stderr, result.stderr


def test_db_api_serves_mutual_tls_from_the_settings_and_ping_uses_them(tmp_path: Path) -> None:
    pki = CertificateAuthority(tmp_path / "pki")
    server, client = pki.issue("db-api", server=True), pki.issue("run", server=False)
    port = free_port()
    address = ["--address", f"127.0.0.1:{port}", "--timeout", "2"]
    env = {
        **_env(tmp_path),
        "WORKBENCH_DB_API_TLS_CERT": str(server.cert),
        "WORKBENCH_DB_API_TLS_KEY": str(server.key),
        "WORKBENCH_DB_API_TLS_CLIENT_CA": str(pki.pem),
    }
    trusting = {
        **env,
        "WORKBENCH_DB_API_TLS_CA": str(pki.pem),
        "WORKBENCH_DB_API_TLS_CLIENT_CERT": str(client.cert),
        "WORKBENCH_DB_API_TLS_CLIENT_KEY": str(client.key),
    }
    process = subprocess.Popen(
        [*WORKBENCH, "db-api", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(150):
            if (ping := _run(["db-api", "ping", *address], trusting)).returncode == 0:
                break
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.2)
        assert "SERVING" in ping.stdout
        # The default timeout: gRPC retries the refused connection meanwhile, then gives its cause.
        plain = _run(["db-api", "ping", "--address", f"127.0.0.1:{port}"], env)
        assert plain.returncode == 1 and "WORKBENCH_DB_API_TLS_CA" in plain.stderr
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_ping_of_a_service_that_is_down_fails_with_a_message(tmp_path: Path) -> None:
    result = _run(
        ["db-api", "ping", "--address", f"127.0.0.1:{free_port()}", "--timeout", "2"], _env(tmp_path)
    )
    assert result.returncode == 1
    assert "db-api not ready" in result.stderr


def test_users_add_stores_a_hashed_password_and_refuses_unknown_scopes(
    sqlite_db_api: RunningServer, sqlite_client: DbApiClient, tmp_path: Path
) -> None:
    env = {**_env(tmp_path), "WORKBENCH_DB_API_ADDRESS": f"127.0.0.1:{sqlite_db_api.port}"}
    env["WORKBENCH_DB_API_TOKEN"] = TOKEN
    add = [*WORKBENCH, "users", "add", "ada", "--scope", "admin", "--scope", "analyst", "--password-stdin"]
    result = subprocess.run(add, env=env, input="s3cret-pass\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    user = sqlite_client.get_document("users", "ada")
    assert user["scopes"] == ["admin", "analyst"] and user["password_hash"].startswith("$argon2id$")
    assert verify_password("s3cret-pass", user["password_hash"])
    bad = [*WORKBENCH, "users", "add", "bob", "--scope", "root", "--password-stdin"]
    refused = subprocess.run(bad, env=env, input="s3cret-pass\n", capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "unknown scope" in refused.stderr
    listed = subprocess.run(
        [*WORKBENCH, "users", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "ada: admin, analyst" in listed.stdout


@pytest.mark.slow
def test_up_starts_every_service_and_stops_them_on_sigterm(tmp_path: Path) -> None:
    env = {
        **_env(tmp_path),
        "WORKBENCH_DB_API_ADDRESS": f"127.0.0.1:{free_port()}",
        "WORKBENCH_WEB_PORT": str(free_port()),
        "WORKBENCH_VOILA_PORT": str(free_port()),
    }
    process = subprocess.Popen(
        [*WORKBENCH, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if "All services are up" in line:
            break
    web_url = next(line.split(" ready at ")[1].strip() for line in lines if line.startswith("web"))
    assert httpx.get(f"{web_url}healthz", timeout=5).json() == {"status": "ok"}
    assert httpx.get(f"{web_url}readyz", timeout=5).status_code == 200
    assert any(line.startswith("scheduler") for line in lines)
    voila_url = next(line.split(" ready at ")[1].strip() for line in lines if line.startswith("voila"))
    overview = httpx.get(f"{voila_url}voila/render/overview.ipynb", timeout=60)
    assert overview.status_code == 200 and "frame-ancestors" in overview.headers["content-security-policy"]
    _assert_quiet_start(lines, tmp_path, web_url, voila_url)
    # Every service on loopback only: Voilà (no sign-in of its own) is reached through the web app.
    ports = {name: int(env[f"WORKBENCH_{name}_PORT"]) for name in ("WEB", "VOILA")}
    ports["DB_API"] = int(env["WORKBENCH_DB_API_ADDRESS"].rsplit(":", 1)[1])
    for address in non_loopback_ipv4():
        assert [name for name, port in ports.items() if not refuses(address, port)] == [], address
    # The default 3 warm kernels get ready (they are stopped with the rest: no orphans, below).
    warm = wait_for_files(tmp_path / "warm-kernels" / "ready", 3)
    family = descendants(process.pid)
    assert {json.loads(path.read_text())["pid"] for path in warm} <= family
    # One scheduler (a run it started meanwhile says `--triggered-by scheduler`: not another one).
    commands = [command_line(pid).split(b"\0") for pid in family]
    assert sum(b"scheduler" in args and b"run" not in args for args in commands) == 1
    again = _run(["up"], env, timeout=60)
    assert again.returncode == 1 and "already in use" in again.stderr
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert process.stderr is not None and process.stderr.read() == ""  # no error, no log line
    time.sleep(0.5)
    assert [pid for pid in family if running(pid)] == []  # no orphans
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{web_url}healthz", timeout=2)


def wait_for_files(folder: Path, count: int, timeout: float = 120) -> list[Path]:
    """The files in `folder` once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while len(found := sorted(folder.glob("*"))) < count:
        assert time.monotonic() < deadline, f"{folder} holds {len(found)} files, not {count}"
        time.sleep(0.2)
    return found


def _assert_quiet_start(lines: list[str], data_dir: Path, web_url: str, voila_url: str) -> None:
    """What `up` printed: where the logs go, four ready lines, the URLs, the next step; nothing
    the services log. What they log is in their files, without the known noise."""
    logs = data_dir / "logs"
    services = ["db-api", "web", "voila", "kernels", "scheduler"]
    assert lines[0] == f"Starting {', '.join(services)}; their logs go to {logs}/<name>.log"
    assert [line.split()[0] for line in lines[1:6]] == services
    assert all(" ready" in line for line in lines[1:6])
    text = "\n".join(lines)
    assert voila_url.endswith("/dashboards/live/")  # the path the web app proxies analysts on
    for line in (f"form        {web_url}", f"results     {web_url}results", f"API docs    {web_url}docs",
                 f"dashboards  {web_url}dashboards"):  # fmt: skip
        assert f"  {line}" in lines
    for step in ("demo --students 20000 --schools 120", "run all", "users add admin --scope admin"):
        assert f"workbench {step}" in text
    assert lines[-1] == "All services are up. Press Ctrl-C to stop them."
    assert not any(noise in text for noise in ("timestamp=", "[Voila]", "uvicorn", "WARNING"))
    assert "GET /healthz" in (logs / "web.log").read_text()
    assert "db-api listening" in (logs / "db-api.log").read_text()
    voila_log = (logs / "voila.log").read_text()
    assert "Voil" in voila_log and "Kernel started" in voila_log
    assert "not trusted" not in voila_log and "without encryption" not in voila_log


@pytest.mark.slow
def test_lab_serves_the_notebooks_with_the_project_kernel(tmp_path: Path) -> None:
    port = free_port()
    env = {**_env(tmp_path), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    lab = subprocess.Popen(
        [*WORKBENCH, "lab", "--no-browser", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert lab.stdout is not None
        token = ""
        deadline = time.monotonic() + 90
        for line in lab.stdout:
            if f"127.0.0.1:{port}/lab?token=" in line:
                token = line.split("token=")[1].split()[0]
                break
            assert time.monotonic() < deadline, "JupyterLab did not start"
        headers = {"Authorization": f"token {token}"}
        specs = httpx.get(f"http://127.0.0.1:{port}/api/kernelspecs", headers=headers, timeout=10).json()
        assert specs["default"] == "workbench"
        assert specs["kernelspecs"]["workbench"]["spec"]["argv"][0] == sys.executable
        files = httpx.get(f"http://127.0.0.1:{port}/api/contents", headers=headers, timeout=10).json()
        assert "clean.ipynb" in {item["name"] for item in files["content"]}
    finally:
        lab.send_signal(signal.SIGTERM)
        lab.wait(30)
