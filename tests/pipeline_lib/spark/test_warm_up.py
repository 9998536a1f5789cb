"""The warm Spark's warm-up, without a Spark: started detached, it waits for its server and leaves
with it (`tests/e2e/test_warm_spark.py` sees it warm a real server up under `workbench up`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline_lib.spark import warm_up
from tests.processes import children, wait_for
from tests.wire_servers import free_port

# Starts the warm-up as `workbench spark-connect` does, then becomes another program (there the
# server's JVM, here `sleep`, which never answers on the port): the stand-in server.
START_THEN_EXEC = """
import os
from pipeline_lib.spark import warm_up
warm_up.start(os.getpid())
os.execv("/bin/sleep", ["sleep", "120"])
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKBENCH_", "SPARK_CONNECT"))}
    return env | {"WORKBENCH_DATA_DIR": str(tmp_path), "WORKBENCH_SPARK_CONNECT_PORT": str(free_port())}


def test_the_warm_up_waits_for_its_server_detached_and_leaves_when_it_ends(tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, "-c", START_THEN_EXEC], env=_env(tmp_path))
    try:
        wait_for(lambda: warm_up.under_way(server.pid), 60, "the warm-up to start")
        time.sleep(1.5)  # it waits while its server runs and does not answer yet
        assert warm_up.under_way(server.pid)
        # A child of init, not of the server (whose JVM would leave it a zombie once it ends).
        assert not children(server.pid, b"pipeline_lib.spark.warm_up")
    finally:
        server.kill()
        server.wait()
    wait_for(lambda: not warm_up.under_way(server.pid), 10, "the warm-up to leave with its server")


def test_a_warm_up_whose_server_has_ended_leaves_at_once(tmp_path: Path) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    # Without the server's end noticed it would wait for an answer for DEADLINE (600 s).
    done = subprocess.run(
        warm_up.command(int(ended.stdout)), env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert "warmed up" not in done.stderr
