"""A Spark standalone cluster for tests and benches: a master and workers started from the
pip-installed PySpark on loopback (`spark-class`), each a process of its own, whose executors
run this interpreter (PYSPARK_PYTHON) and so import the installed `workbench` data source.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0


@dataclass
class Daemon:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM (a worker then stops its executors), SIGKILL to the group if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Anything it started and left behind: its own process group, by its id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL to the daemon and everything it started (its executors), as a lost machine."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@dataclass
class Cluster:
    master_url: str
    ui_url: str
    work_dir: Path
    master: Daemon
    workers: list[Daemon] = field(default_factory=list)

    def state(self) -> dict:
        """The master's view (its web UI's JSON): workers, applications."""
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=2) as reply:
            return json.load(reply)


def _free_ports(count: int) -> list[int]:
    """`count` different free ports: each socket is held until all are chosen (one chosen and
    closed may be handed out again at once)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _start(name: str, cls: str, args: list[str], directory: Path, env: Mapping[str, str]) -> Daemon:
    log = directory / f"{name}.log"
    command = [str(SPARK_HOME / "bin" / "spark-class"), cls, *args]
    if shutil.which("setpriv"):
        # Killed with the process that started it, even by a signal that runs no `finally`
        # (a bench stopped with kill): spark-class execs the JVM, which keeps the death signal.
        # The signal comes when the starting *thread* ends: start clusters from the main thread.
        command = ["setpriv", "--pdeathsig", "KILL", "--", *command]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=directory,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() can end all of it
        )
    return Daemon(name, process, log)


def _wait_for_workers(cluster: Cluster, count: int, cores: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    daemons = [cluster.master, *cluster.workers]
    while time.monotonic() < deadline:
        for daemon in daemons:
            if daemon.process.poll() is not None:
                raise RuntimeError(f"the {daemon.name} exited early:\n{daemon.log.read_text()[-4000:]}")
        with contextlib.suppress(OSError):
            alive = [w for w in cluster.state().get("workers", []) if w.get("state") == "ALIVE"]
            if len(alive) == count and all(w.get("cores") == cores for w in alive):
                return
        time.sleep(0.5)
    logs = "\n".join(f"--- {d.name}\n{d.log.read_text()[-3000:]}" for d in daemons)
    raise TimeoutError(f"{count} workers did not register with the master in {START_TIMEOUT:.0f} s\n{logs}")


@contextlib.contextmanager
def standalone_cluster(
    folder: Path,
    *,
    workers: int = 1,
    cores: int = 2,
    memory: str = "1g",
    env: Mapping[str, str] | None = None,
) -> Iterator[Cluster]:
    """A master and `workers` workers (`cores` and `memory` each) on 127.0.0.1, stopped afterwards.
    `env` adds to what the daemons (and so the executors) see."""
    folder.mkdir(parents=True, exist_ok=True)
    work_dir = folder / "work"
    for directory in (work_dir, folder / "worker-local", folder / "logs"):
        directory.mkdir(exist_ok=True)
    environment = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(folder / "worker-local"),
        "SPARK_LOG_DIR": str(folder / "logs"),
        "PYSPARK_PYTHON": sys.executable,
        **(env or {}),
    }
    port, ui_port, *worker_ui_ports = _free_ports(2 + workers)
    master = _start(
        "master",
        "org.apache.spark.deploy.master.Master",
        ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)],
        folder,
        environment,
    )
    cluster = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}", work_dir, master)
    try:
        for n in range(workers):
            args = [
                "--host",
                "127.0.0.1",
                "--cores",
                str(cores),
                "--memory",
                memory,
                "--work-dir",
                str(work_dir),
            ]
            args += ["--webui-port", str(worker_ui_ports[n]), cluster.master_url]
            name = f"worker-{n}" if workers > 1 else "worker"
            cluster.workers.append(
                _start(name, "org.apache.spark.deploy.worker.Worker", args, folder, environment)
            )
        _wait_for_workers(cluster, workers, cores)
        yield cluster
    finally:
        for daemon in reversed([master, *cluster.workers]):  # the workers first, then the master
            daemon.stop()
