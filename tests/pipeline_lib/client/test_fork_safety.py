"""A process with a busy db-api channel can start subprocesses: pyspark starts the driver JVM
with `preexec_fn` (a plain fork), and gRPC's fork handlers used to kill about one such child in
thirty before it reached exec (grpc/grpc#43055), failing a run with "Java gateway process exited"."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

FORKS = 200

# A fresh interpreter that imports the client as a notebook does, keeps a channel busy from a
# thread, and forks the way pyspark's launch_gateway does.
SCRIPT = textwrap.dedent(
    """
    import signal, subprocess, sys, threading
    from pathlib import Path

    from pipeline_lib.client.sync import DbApiClient
    from db_api.server import start_server
    from db_api.store.sqlite import SqliteStore

    server = start_server(SqliteStore(Path(sys.argv[1]) / "s.sqlite3"), "127.0.0.1:0", token="t")
    client = DbApiClient(f"127.0.0.1:{server.port}", "t")
    client.insert_one("raw", {"_id": "a"})
    done = threading.Event()

    def busy():
        while not done.is_set():
            client.count("raw")

    threading.Thread(target=busy, daemon=True).start()
    failed = []
    for _ in range(int(sys.argv[2])):
        child = subprocess.Popen(
            ["/bin/true"], stderr=subprocess.PIPE,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        _, err = child.communicate()
        if child.returncode != 0:
            failed.append(f"exit {child.returncode}: {err.decode(errors='replace').strip()[:200]}")
    done.set()
    print(len(failed))
    print("\\n".join(failed[:3]))
    """
)


def _without_the_setting(code: str, *args: str) -> str:
    """What `code` prints in a new Python at the repository's root whose environment does not set
    GRPC_ENABLE_FORK_SUPPORT (as a user's shell does not)."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[3],
        env={name: value for name, value in os.environ.items() if name != "GRPC_ENABLE_FORK_SUPPORT"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_children_forked_beside_a_busy_channel_reach_exec(tmp_path: Path) -> None:
    failed, _, examples = _without_the_setting(SCRIPT, str(tmp_path), str(FORKS)).partition("\n")
    assert failed == "0", f"{failed} of {FORKS} children died before exec:\n{examples}"


# What the environment says when grpc is first imported by the benchmarks' shared helpers, which
# scripts import before anything of pipeline_lib (bench_run, and scratch scripts that start Spark).
FIRST_GRPC_IMPORT = """
import os, sys

class Watch:
    def find_spec(self, name, path, target=None):
        if name == "grpc":
            print(os.environ.get("GRPC_ENABLE_FORK_SUPPORT"))
        return None

sys.meta_path.insert(0, Watch())
import tests.bench.bench_db_api
"""


def test_the_benchmarks_helpers_import_grpc_with_its_fork_handlers_off() -> None:
    assert _without_the_setting(FIRST_GRPC_IMPORT).split() == ["false"]
