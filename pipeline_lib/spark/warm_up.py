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
import sys
import threading
import time

from pipeline_lib.parent_watch import process_start, running
from pipeline_lib.settings import Settings, get_settings
from pipeline_lib.spark.class_archive import start_detached
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
    start_detached(command(server_pid))  # its output to this process's stderr: the service's log


def under_way(server_pid: int) -> bool:
    """Whether a warm-up of the server that process `server_pid` runs has not ended yet."""
    return bool(running(command(server_pid)[1:]))


def warm_up(settings: Settings) -> None:
    """Attach to the warm Spark, run the sample work, and release the session."""
    from pipeline_lib.spark.session import attach_warm

    spark = attach_warm(settings, app_name=APP_NAME)
    try:
        sample_work(spark)
    finally:
        spark.stop()


def _leave_when_ended(server_pid: int) -> None:
    """Exit this process once process `server_pid` (the same process: its id and start) has ended,
    or at `DEADLINE`: a client of a server that is gone would otherwise retry for minutes."""
    started, deadline = process_start(server_pid), time.monotonic() + DEADLINE
    while started is not None and process_start(server_pid) == started and time.monotonic() < deadline:
        time.sleep(0.5)
    why = "its deadline passed" if time.monotonic() >= deadline else "the server ended"
    print(f"{_now()} warm Spark: the warm-up stops, {why}", file=sys.stderr, flush=True)
    os._exit(1)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Warm the warm Spark up (see the module).")
    parser.add_argument("--server", type=int, required=True, help="the process id of the warm Spark")
    args = parser.parse_args(argv)
    settings = get_settings()
    started, stamp = time.perf_counter(), _now()
    # It leaves from that thread, whenever the server ends: while it waits for an answer or works.
    threading.Thread(target=_leave_when_ended, args=(args.server,), daemon=True, name="leave").start()
    while not answers(settings):
        time.sleep(0.2)
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
