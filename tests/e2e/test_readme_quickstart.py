"""The README's quick start, run as written on a copy of the checkout with the default settings.

Its commands are read from the README itself, so the two cannot drift apart. Nothing is set but
the ports (so the test runs beside others): the data lands in the copy's own `var/`, as it does
for a new user. Installing the dependencies again would take minutes and prove nothing new, so
the copy's `.venv` sees the packages of the venv running the tests, while the project's own code
is the copy's; `make` finds it installed and goes straight to `workbench up`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from pipeline_lib.cli.addresses import http_answers
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.settings import LIVE_DASHBOARDS_PATH
from tests.wire_servers import free_port

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parents[2]
# The README asks for a realistic 20,000 students; 2,000 prove the same path in a third of the time.
SMALLER = {"--students": "2000", "--schools": "40"}
PASSWORD = "quick-start-password"


def quick_start_blocks(readme: str) -> list[list[str]]:
    """The commands of each ```sh block in the README's "Quick start" section, comments dropped."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [
        [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]
        for block in blocks
    ]


def smaller(command: str) -> list[str]:
    words = shlex.split(command)
    return [SMALLER.get(words[i - 1], word) if i else word for i, word in enumerate(words)]


def test_the_readme_quick_start_blocks_are_what_this_test_runs() -> None:
    setup, next_steps = quick_start_blocks((CHECKOUT / "README.md").read_text())
    assert setup == ["make run", "make test"]
    assert [shlex.split(c)[:2] for c in next_steps] == [
        [".venv/bin/workbench", "demo"],
        [".venv/bin/workbench", "run"],
        [".venv/bin/workbench", "users"],
    ]


def _copy_checkout(target: Path) -> None:
    """The checkout's files as git sees them (tracked and new, nothing ignored: no venv, no var/)."""
    listed = subprocess.run(
        ["git", "-C", str(CHECKOUT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = CHECKOUT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
            (target / name).chmod(source.stat().st_mode)


def _borrowed_venv(checkout: Path) -> None:
    """A `.venv` in the copy whose packages are ours and whose project code is the copy's."""
    venv = checkout / ".venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # type: ignore[attr-defined]
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    ours = sysconfig.get_paths()["purelib"]
    # The copy's folder first, so its pipeline_lib wins over the editable install of ours.
    (Path(purelib) / "workbench_quick_start.pth").write_text(
        f"{checkout}\nimport site; site.addsitedir({ours!r})\n"
    )
    script = venv / "bin" / "workbench"
    script.write_text(f"#!{python}\nimport sys\nfrom pipeline_lib.cli.main import main\nsys.exit(main())\n")
    script.chmod(0o755)
    # Jupyter's data (Voilà's templates, nbconvert's) from ours; kernels are the copy's own.
    shared = Path(sys.prefix) / "share" / "jupyter"
    (venv / "share" / "jupyter").mkdir(parents=True)
    for entry in shared.iterdir():
        if entry.name != "kernels":
            (venv / "share" / "jupyter" / entry.name).symlink_to(entry)
    (venv / ".installed-stamp").touch()  # newer than pyproject.toml: `make` installs nothing


@dataclass
class Output:
    """A process's combined output, read as it comes."""

    lines: list[str] = field(default_factory=list)

    def follow(self, process: subprocess.Popen) -> None:
        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.lines.append(line.rstrip("\n"))

        threading.Thread(target=read, daemon=True).start()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class QuickStart:
    checkout: Path
    env: dict[str, str]
    web_url: str
    db_api_address: str
    up_output: Output
    next_steps: list[str]

    def run(self, command: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            smaller(command),
            cwd=self.checkout,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=900,
            start_new_session=True,  # no terminal: a password prompt reads standard input
        )


def _wait_until(ready, what: str, process: subprocess.Popen, output: Output, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"`make run` ended before {what}:\n{output.text}"
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s:\n{output.text}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuickStart]:
    checkout = tmp_path_factory.mktemp("quick-start") / "student-data-workbench"
    _copy_checkout(checkout)
    _borrowed_venv(checkout)
    setup, next_steps = quick_start_blocks((checkout / "README.md").read_text())
    web_port, db_port, voila_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKBENCH_", "VIRTUAL_ENV"))}
    env.update(
        WORKBENCH_DB_API_ADDRESS=f"127.0.0.1:{db_port}",
        WORKBENCH_WEB_PORT=str(web_port),
        WORKBENCH_VOILA_PORT=str(voila_port),
    )
    up_output = Output()
    system = subprocess.Popen(
        shlex.split(setup[0]),
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    up_output.follow(system)
    web_url = f"http://127.0.0.1:{web_port}"
    try:
        _wait_until(
            lambda: (
                http_answers(f"{web_url}/readyz")
                and http_answers(f"http://127.0.0.1:{voila_port}{LIVE_DASHBOARDS_PATH}/")
            ),
            "the web app and the dashboards answering",
            system,
            up_output,
        )
        yield QuickStart(checkout, env, web_url, f"127.0.0.1:{db_port}", up_output, next_steps)
    finally:
        os.killpg(system.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches the whole group
        try:
            system.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(system.pid, signal.SIGKILL)
            system.wait()


def test_the_next_steps_fill_the_pipeline_and_results_show_the_students(quick_start: QuickStart) -> None:
    demo, run_all, add_admin = quick_start.next_steps
    done = quick_start.run(demo)
    assert done.returncode == 0, done.stdout + done.stderr
    warm = _warm_kernels(quick_start.checkout / "var", wanted=3)  # what a user's next command finds
    done = done_all = quick_start.run(run_all)
    assert done.returncode == 0, done.stdout + done.stderr
    # It ran in the kernels `make run` kept warm, as typed from another shell: they are gone.
    assert not warm & _warm_kernels(quick_start.checkout / "var", wanted=0)
    # The scheduler `make run` started may fire a run of its own meanwhile (clean every ten
    # minutes): judge the runs this command made, by the ids it printed.
    run_ids = set(re.findall(r"^run (\S+): ", done.stdout, flags=re.MULTILINE))
    assert len(run_ids) == 2, done.stdout
    done = quick_start.run(add_admin, stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert done.returncode == 0, done.stdout + done.stderr

    # Everything lives in the copy's own var/, where the README says it does.
    var = quick_start.checkout / "var"
    assert (var / "db" / "workbench.sqlite3").is_file()
    token = (var / "secrets" / "db_api_token").read_text().strip()
    with DbApiClient(quick_start.db_api_address, token) as client:
        runs = {r["notebook"]: r for r in client.list_documents("runs", limit=100) if r["_id"] in run_ids}
        cleaned = client.count("cleaned")
    assert {runs["clean"]["status"], runs["process"]["status"]} == {"succeeded"}, runs
    students = runs["process"]["counts"]["students"]
    assert 1800 <= students <= cleaned <= 2000
    assert list(var.glob("runs/*/*/*/*-process.ipynb"))

    with httpx.Client(base_url=quick_start.web_url, timeout=30) as http:
        csrf = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        http.post("/login", data={"username": "admin", "password": PASSWORD, "csrf": csrf})
        page = http.get("/results")
        overview = http.get("/dashboards/overview")  # where the README's quick start ends
    assert page.status_code == 200, page.text[:500]
    assert f"from {students:,} records" in page.text
    assert "Mean" in page.text or "mean" in page.text
    assert "dashboard snapshots: 5 rendered" in done_all.stdout, done_all.stdout + done_all.stderr
    snapshot = overview.text.split('<article class="dashboard-snapshot">', 1)[1]
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", snapshot))
    assert overview.status_code == 200 and f"{students:,} students in the cleaned data" in words
    assert "<script" not in snapshot


def _warm_kernels(var: Path, wanted: int) -> set[int]:
    """The processes of the ready warm kernels, once there are `wanted` of them."""
    deadline = time.monotonic() + 120
    folder = var / "warm-kernels" / "ready"
    while True:
        try:
            ready = {json.loads(path.read_text())["pid"] for path in folder.iterdir()}
        except (OSError, ValueError):  # not there yet, or a file taken while read
            ready = set()
        if len(ready) >= wanted:
            return ready
        assert time.monotonic() < deadline, f"{wanted} warm kernels not ready in {var}"
        time.sleep(0.2)


def test_make_run_prints_the_ready_lines_and_no_noise(quick_start: QuickStart) -> None:
    text = quick_start.up_output.text
    for service in ("db-api", "web", "voila", "kernels", "scheduler"):
        assert re.search(rf"^{service}\s+ready", text, flags=re.MULTILINE), text
    for noise in ("Traceback", "WARNING", "not trusted", "without encryption", "incubator"):
        assert noise not in text, f"{noise!r} in the output of `make run`:\n{text}"
