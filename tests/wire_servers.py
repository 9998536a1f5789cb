"""Start MongoDB-wire-protocol servers as subprocesses for the test suite.

The db-api tests run against real servers that speak the MongoDB wire
protocol, reached only through pymongo:

* SecantusDB (PyPI ``secantusdb``): installed into its own virtualenv under
  ``.cache/secantusdb-venv`` and only ever run as a separate process (it is
  GPL-licensed, so it is never imported by our code). It advertises itself as
  a single-node replica set and supports multi-document transactions.
* FerretDB v1 with its SQLite handler: built from source with the Go
  toolchain into ``.cache/bin/ferretdb``. It does not support transactions.
* mongod: used only when a ``mongod`` binary is on PATH; started as a
  single-node replica set so that transactions work.

``ensure_secantusdb`` and ``ensure_ferretdb`` install or build the servers on
first use (a fresh clone has no ``.cache``); the ``start_*`` functions launch
a server on a free loopback port, with its data and log in ``data_dir``, and
return once pymongo can ``ping`` it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pymongo
from pymongo.errors import PyMongoError

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache"

SECANTUSDB_REQUIREMENT = "secantusdb==0.7.0b3"
SECANTUSDB_VENV = CACHE_DIR / "secantusdb-venv"
SECANTUSDB_EXE = SECANTUSDB_VENV / "bin" / "secantusd-py"
_SECANTUSDB_MARKER = SECANTUSDB_VENV / ".installed"

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
FERRETDB_SRC = CACHE_DIR / "ferretdb-src"
FERRETDB_EXE = CACHE_DIR / "bin" / "ferretdb"

MONGO_JAVA_SERVER_SRC = REPO_ROOT / "tests" / "mongo_java_server"
MONGO_JAVA_SERVER_BUILD = CACHE_DIR / "mongo-java-server"

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
LOG_TAIL_CHARS = 4000

# Environment variables of the calling interpreter that must not leak into
# the SecantusDB venv's interpreter.
_PYTHON_ENV_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now and not returned before in this process.

    A port bound and closed may be handed out again at once, so two calls in a row could name the
    same port for two servers (a CI run failed so: the web app on the db-api's port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class WireServer:
    """A running wire-protocol server process and how to reach it."""

    name: str
    uri: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    supports_transactions: bool

    @property
    def port(self) -> int:
        """The loopback TCP port the server listens on."""
        port = urlsplit(self.uri).port
        if port is None:
            raise ValueError(f"no port in {self.uri!r}")
        return port

    @property
    def log_path(self) -> Path:
        """File that receives the server's stdout and stderr."""
        return self.data_dir / f"{self.name}.log"

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Terminate the server, killing it if it does not exit in time."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --------------------------------------------------------------------------
# Installing / building
# --------------------------------------------------------------------------


@contextlib.contextmanager
def _cache_lock(name: str) -> Iterator[None]:
    """Serialise installs across processes (e.g. parallel pytest workers)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / f".{name}.lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _run_step(what: str, cmd: list[str], cwd: Path | None = None) -> str:
    """Run an install/build command; raise RuntimeError with its output."""
    try:
        result = subprocess.run(
            cmd,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise RuntimeError(f"{what} failed: cannot run {cmd[0]!r}: {exc}") from exc
    if result.returncode != 0:
        command = " ".join(cmd)
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {command}\n{result.stdout}")
    return result.stdout


def _base_python() -> str:
    """The interpreter used to create the SecantusDB venv (not our venv's)."""
    base = getattr(sys, "_base_executable", None)
    if base and Path(base).is_file():
        return str(base)
    found = shutil.which("python3")
    if found is None:
        raise RuntimeError("SecantusDB install failed: no python3 interpreter found")
    return found


def ensure_secantusdb() -> Path:
    """Return the ``secantusd-py`` path, installing SecantusDB if missing.

    SecantusDB goes into its own venv so that its dependencies (numpy,
    shapely, its own pymongo, ...) cannot conflict with ours.
    """
    if _SECANTUSDB_MARKER.is_file() and SECANTUSDB_EXE.is_file():
        return SECANTUSDB_EXE
    with _cache_lock("secantusdb"):
        if _SECANTUSDB_MARKER.is_file() and SECANTUSDB_EXE.is_file():
            return SECANTUSDB_EXE
        # A venv without the marker is a half-finished install: start over.
        shutil.rmtree(SECANTUSDB_VENV, ignore_errors=True)
        _run_step("creating the SecantusDB venv", [_base_python(), "-m", "venv", str(SECANTUSDB_VENV)])
        _run_step(
            "installing SecantusDB",
            [
                str(SECANTUSDB_VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                SECANTUSDB_REQUIREMENT,
            ],
        )
        if not SECANTUSDB_EXE.is_file():
            raise RuntimeError(f"SecantusDB installed but {SECANTUSDB_EXE} is missing")
        _SECANTUSDB_MARKER.write_text(SECANTUSDB_REQUIREMENT + "\n")
    return SECANTUSDB_EXE


def _go() -> str:
    go = shutil.which("go")
    if go is None and Path("/usr/local/go/bin/go").is_file():
        go = "/usr/local/go/bin/go"
    if go is None:
        raise RuntimeError("FerretDB build failed: the Go toolchain ('go') is not on PATH")
    return go


def ensure_ferretdb() -> Path:
    """Return the ``ferretdb`` path, building FerretDB from source if missing.

    ``go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`` builds,
    but the binary panics at start-up ("Invalid build/version/version.txt file
    content") because the module's ``build/version/version.txt`` is generated
    by FerretDB's release tooling and absent from the module. So the module
    source is copied out of the Go module cache, ``version.txt`` is written,
    and the binary is built from that copy.
    """
    if FERRETDB_EXE.is_file():
        return FERRETDB_EXE
    with _cache_lock("ferretdb"):
        if FERRETDB_EXE.is_file():
            return FERRETDB_EXE
        go = _go()
        download = _run_step(
            "downloading the FerretDB module",
            [go, "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"],
            cwd=CACHE_DIR,
        )
        module_dir = _json_field(download, "Dir")
        shutil.rmtree(FERRETDB_SRC, ignore_errors=True)
        shutil.copytree(module_dir, FERRETDB_SRC)
        for path in [FERRETDB_SRC, *FERRETDB_SRC.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)  # module cache files are read-only
        (FERRETDB_SRC / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
        FERRETDB_EXE.parent.mkdir(parents=True, exist_ok=True)
        tmp_exe = FERRETDB_EXE.with_name(FERRETDB_EXE.name + ".tmp")
        _run_step(
            "building FerretDB",
            [go, "build", "-buildvcs=false", "-trimpath", "-o", str(tmp_exe), "./cmd/ferretdb"],
            cwd=FERRETDB_SRC,
        )
        tmp_exe.replace(FERRETDB_EXE)
    return FERRETDB_EXE


def ensure_mongo_java_server() -> tuple[str, str]:
    """Build the runner of mongo-java-server (`tests/mongo_java_server`) once; return the java
    executable and the class path. Maven resolves the library from Maven Central."""
    classes, class_path = MONGO_JAVA_SERVER_BUILD / "classes", MONGO_JAVA_SERVER_BUILD / "classpath.txt"
    tools = {name: shutil.which(name) for name in ("java", "javac", "mvn")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        raise RuntimeError(f"building mongo-java-server needs {', '.join(missing)} on PATH (a JDK and Maven)")
    with _cache_lock("mongo-java-server"):
        built = classes / "Serve.class"
        sources = [MONGO_JAVA_SERVER_SRC / "Serve.java", MONGO_JAVA_SERVER_SRC / "pom.xml"]
        if not built.is_file() or max(f.stat().st_mtime for f in sources) > built.stat().st_mtime:
            MONGO_JAVA_SERVER_BUILD.mkdir(parents=True, exist_ok=True)
            _run_step(
                "resolving mongo-java-server",
                [str(tools["mvn"]), "-q", "-f", str(MONGO_JAVA_SERVER_SRC / "pom.xml"),
                 "dependency:build-classpath", f"-Dmdep.outputFile={class_path}"],
            )  # fmt: skip
            _run_step(
                "compiling the mongo-java-server runner",
                [str(tools["javac"]), "-cp", class_path.read_text().strip(), "-d", str(classes),
                 str(MONGO_JAVA_SERVER_SRC / "Serve.java")],
            )  # fmt: skip
    return str(tools["java"]), f"{classes}:{class_path.read_text().strip()}"


def _json_field(output: str, field: str) -> str:
    try:
        value = json.loads(output)[field]
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"unexpected 'go mod download -json' output:\n{output}") from exc
    if not isinstance(value, str) or not value:
        raise RuntimeError(f"'go mod download -json' gave no {field}:\n{output}")
    return value


# --------------------------------------------------------------------------
# Starting
# --------------------------------------------------------------------------


def _log_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return text[-LOG_TAIL_CHARS:] or "<empty log>"


def _launch(
    name: str,
    cmd: list[str],
    port: int,
    data_dir: Path,
    *,
    supports_transactions: bool,
    env: dict[str, str] | None = None,
) -> WireServer:
    """Start ``cmd`` with output to ``data_dir/<name>.log``; return once it pings."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = WireServer(
        name=name,
        uri=f"mongodb://127.0.0.1:{port}/?directConnection=true",
        process=process,
        data_dir=data_dir,
        supports_transactions=supports_transactions,
    )
    try:
        _wait_for_ping(server)
    except BaseException:
        server.stop()
        raise
    return server


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_for_ping(server: WireServer, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            raise RuntimeError(
                f"{server.name} exited with code {code} during start-up; "
                f"log {server.log_path}:\n{_log_tail(server.log_path)}"
            )
        if not _port_open(server.port):
            time.sleep(0.02)
            continue
        # A fresh client per attempt: a client that failed once only
        # re-checks the server every 0.5 s, which would slow start-up down.
        client: pymongo.MongoClient[dict[str, Any]]
        with pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=200, connectTimeoutMS=200) as client:
            try:
                client.admin.command("ping")
                return
            except PyMongoError as exc:
                last_error = exc
        time.sleep(0.05)
    raise RuntimeError(
        f"{server.name} did not answer ping within {timeout:.0f}s ({last_error}); "
        f"log {server.log_path}:\n{_log_tail(server.log_path)}"
    )


def start_secantusdb(data_dir: Path) -> WireServer:
    """Start SecantusDB on a free loopback port with storage in ``data_dir``."""
    exe = ensure_secantusdb()
    data_dir.mkdir(parents=True, exist_ok=True)
    # Passing --config disables auto-discovery of ./secantusd.toml,
    # ~/.secantus/secantusd.toml and /etc/secantus/secantusd.toml.
    config = data_dir / "secantusd.toml"
    config.touch()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in _PYTHON_ENV_VARS}
    cmd = [
        str(exe),
        "--config", str(config),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--storage-path", str(data_dir / "db"),
        "--sync-on-commit",
    ]  # fmt: skip
    return _launch("secantusdb", cmd, port, data_dir, supports_transactions=True, env=env)


def start_ferretdb(data_dir: Path) -> WireServer:
    """Start FerretDB (SQLite handler) on a free loopback port, data in ``data_dir``."""
    exe = ensure_ferretdb()
    sqlite_dir = data_dir / "sqlite"
    sqlite_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [
        str(exe),
        "--handler=sqlite",
        f"--sqlite-url=file:{sqlite_dir}/",
        f"--listen-addr=127.0.0.1:{port}",
        f"--state-dir={data_dir}",
        "--debug-addr=-",  # default 127.0.0.1:8088 would clash between instances
        "--telemetry=disable",
    ]
    return _launch("ferretdb", cmd, port, data_dir, supports_transactions=False)


def start_mongo_java_server(data_dir: Path, heap_mb: int = 8192) -> WireServer:
    """Start mongo-java-server (in memory: `data_dir` holds only its log) on a free loopback port.

    A stand-in for MongoDB where speed matters more than fidelity: no transactions (the store
    commits upserts first, deletes last), and an `$in` costs the square of its list's length."""
    java, class_path = ensure_mongo_java_server()
    port = free_port()
    cmd = [java, f"-Xmx{heap_mb}m", "-cp", class_path, "Serve", str(port)]
    return _launch("mongo-java-server", cmd, port, data_dir, supports_transactions=False)


def start_mongod(data_dir: Path, replica_set: str = "rs0") -> WireServer:
    """Start ``mongod`` as an initiated single-node replica set (for transactions)."""
    exe = shutil.which("mongod")
    if exe is None:
        raise RuntimeError("mongod is not on PATH")
    db_path = data_dir / "db"
    db_path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [
        exe,
        "--bind_ip", "127.0.0.1",
        "--port", str(port),
        "--dbpath", str(db_path),
        "--replSet", replica_set,
        "--wiredTigerCacheSizeGB", "0.25",
    ]  # fmt: skip
    server = _launch("mongod", cmd, port, data_dir, supports_transactions=True)
    try:
        _initiate_replica_set(server, replica_set, f"127.0.0.1:{port}")
    except BaseException:
        server.stop()
        raise
    return server


def _initiate_replica_set(server: WireServer, name: str, host: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=2000) as client:
        client.admin.command("replSetInitiate", {"_id": name, "members": [{"_id": 0, "host": host}]})
        while time.monotonic() < deadline:
            if client.admin.command("hello").get("isWritablePrimary"):
                return
            time.sleep(0.1)
    raise RuntimeError(
        f"mongod replica set {name} has no primary after {STARTUP_TIMEOUT:.0f}s; "
        f"log {server.log_path}:\n{_log_tail(server.log_path)}"
    )
