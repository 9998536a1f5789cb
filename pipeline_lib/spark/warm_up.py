"""The warm Spark's warm-up: once its server answers, a session attached to it runs a sample of the
clean's and process's work (`sample_work`) and leaves, so that the first run to attach does not pay
for what a new server does once: the Python workers' daemon started with its imports, the data
source looked up and registered, the first jobs' code generated and compiled.

Measured on this 2-core machine (2026-12-07, 1,000,000 raw records read alone by the first run
attached to a new server): without it the run's start took 1.4 s and its read 5.9 s (two runs);
after it 0.15 s and 4.4-5.0 s (five). It ended 6.4-6.6 s after the server answered (quiet machine).

`workbench spark-connect` starts it in the background just before its process becomes the server's
JVM. It leaves once done, once the server is gone, or after `DEADLINE` seconds; what it did goes to
stderr (the service's log). Nothing depends on it: a run that attaches meanwhile, or after it
failed, runs as it would without it (the first such run only slower).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pipeline_lib.parent_watch import process_start
from pipeline_lib.settings import Settings, get_settings, spark_connect_token
from pipeline_lib.spark.class_archive import DETACH
from pipeline_lib.spark.sample_work import sample_work
from pipeline_lib.spark.warm import answers

MODULE = "pipeline_lib.spark.warm_up"
APP_NAME = "workbench warm-up"
DEADLINE = 600.0  # seconds from its start: the server's start and the work together


def command(server_pid: int) -> list[str]:
    """The warm-up of the server that process `server_pid` runs (or is about to exec)."""
    return [sys.executable, "-m", MODULE, "--server", str(server_pid)]


def start(server_pid: int) -> None:
    """Start the warm-up in the background, detached: a child of init, not of the server's JVM
    (which reaps no child it did not start), in a session of its own (a Ctrl-C meant for
    `workbench up` reaches the server, and the warm-up leaves with it). Its output goes to stderr."""
    subprocess.run(
        [*DETACH, *command(server_pid)],
        stdin=subprocess.DEVNULL,
        stdout=2,  # this process's stderr, whatever object sys.stderr is (the service's log)
        start_new_session=True,
        close_fds=True,
        check=False,
    )


def under_way(server_pid: int) -> bool:
    """Whether a warm-up of the server that process `server_pid` runs has not ended yet."""
    wanted = "\0".join([*command(server_pid)[1:], ""]).encode()  # its arguments, each ended by NUL
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and process_start(int(entry.name)) is not None:
            try:
                if wanted in (entry / "cmdline").read_bytes():
                    return True
            except OSError:
                continue  # ended meanwhile
    return False


def wait_for_server(settings: Settings, server: Callable[[], bool], timeout: float) -> bool:
    """True once the warm Spark answers; False if `server()` says it ended first, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server():
        if answers(settings):
            return True
        time.sleep(0.2)
    return False


def warm_up(settings: Settings) -> None:
    """Attach to the warm Spark, run the sample work, and release the session."""
    from pipeline_lib.spark.session import get_spark

    # Read by PySpark's Connect client: this process's own environment, not its command line.
    os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = spark_connect_token(settings)
    spark = get_spark(settings.spark_connect_url, app_name=APP_NAME, settings=settings)
    try:
        sample_work(spark)
    finally:
        spark.stop()


def _leave_when_ended(server: Callable[[], bool]) -> None:
    """Exit this process once `server()` says the server ended, or at `DEADLINE`: a client of a
    server that is gone would otherwise retry for minutes."""
    deadline = time.monotonic() + DEADLINE
    while server() and time.monotonic() < deadline:
        time.sleep(0.5)
    os._exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Warm the warm Spark up (see the module).")
    parser.add_argument("--server", type=int, required=True, help="the process id of the warm Spark")
    args = parser.parse_args(argv)
    settings = get_settings()
    started, stamp = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S")
    server_start = process_start(args.server)

    def server() -> bool:  # the same process still running (not another given its id since)
        return server_start is not None and process_start(args.server) == server_start

    threading.Thread(target=_leave_when_ended, args=(server,), daemon=True, name="leave").start()
    if not wait_for_server(settings, server, DEADLINE):
        print(f"{stamp} warm Spark: no warm-up, the server did not answer", file=sys.stderr, flush=True)
        return
    try:
        warm_up(settings)
    except Exception as exc:  # nothing depends on it: say why, and leave
        print(
            f"{stamp} warm Spark: the warm-up failed, runs attach all the same (the first slower): {exc}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1) from None
    seconds = time.perf_counter() - started
    print(
        f"{stamp} warm Spark: warmed up in {seconds:.1f} s (its Python workers, the data source and "
        "the first jobs' compiled code are ready for the first run)",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    main()
