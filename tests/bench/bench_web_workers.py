"""Benchmark of single submissions with one and two web workers, as `workbench web --workers N`
serves them.

POST /api/v1/submissions with a bearer token, by `wrk` at 32 clients, through `workbench web`
-> gRPC -> a `workbench db-api` process on the embedded store (every 201 a committed record).
Three ways, each with fresh processes per run:
  - one worker, its counts in memory (the default: nothing shared);
  - one worker, its counts in a MongoDB wire server (what replicas need);
  - two workers sharing that server (`--workers 2`).
Every authenticated request asks the counts' storage whether its token was signed out, so the
shared storage's round trip is in each request. The wire server here is SecantusDB (a Python
server, one process, the one the tests use); a MongoDB deployment answers faster. On two cores
wrk, the workers, the db-api and the wire server share the CPU, so no speed-up is expected from a
second worker; the figures show what sharing costs. Prints the median of --repeat runs.

    python tests/bench/bench_web_workers.py [--seconds S] [--repeat R]

Needs `wrk` (Debian/Ubuntu: `apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests import wire_servers  # noqa: E402
from tests.bench.bench_web import (  # noqa: E402
    PASSWORD,
    USER,
    Processes,
    WrkResult,
    find_wrk,
    free_port,
    machine,
    run_wrk,
    settled_count,
    start_db_api_with_submitter,
    wait_until,
    write_lua,
)

CLIENTS = 32
WAYS = (
    ("1 worker, counts in memory", 1, False),
    ("1 worker, counts in SecantusDB", 1, True),
    ("2 workers, counts in SecantusDB", 2, True),
)


def one_way(wrk: str, workdir: Path, workers: int, limits_uri: str | None, seconds: float) -> WrkResult:
    processes = Processes(workdir)
    web_port = free_port()
    try:
        db, env = start_db_api_with_submitter(
            workdir, processes, **({"limits_uri": limits_uri} if limits_uri else {})
        )
        web = [
            sys.executable,
            "-m",
            "pipeline_lib.cli",
            "web",
            "--port",
            str(web_port),
            "--workers",
            str(workers),
        ]
        processes.start("web", web, env)
        url = f"http://127.0.0.1:{web_port}"
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, processes, "workbench web")
        form = {"username": USER, "password": PASSWORD, "scope": "submit"}
        token = httpx.post(f"{url}/api/v1/auth/token", data=form, timeout=30).json()["access_token"]
        lua = write_lua(workdir / "post.lua", token)
        run_wrk(wrk, url, lua, CLIENTS, 2)  # warm-up: connections, worker imports, the storage's indexes
        before = settled_count(db)
        result = run_wrk(wrk, url, lua, CLIENTS, seconds)
        processes.check_alive()
        stored = settled_count(db) - before
        if not result.requests <= stored <= result.requests + CLIENTS:
            raise RuntimeError(f"wrk counted {result.requests} answers but raw grew by {stored}")
        db.close()
        return result
    except Exception:
        print(processes.tails(), file=sys.stderr)
        raise
    finally:
        processes.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way; the median is printed")
    args = parser.parse_args()
    wrk = find_wrk()
    print(f"machine: {machine()}")
    print(f"POST /api/v1/submissions, {CLIENTS} wrk clients, {args.seconds:g} s, median of {args.repeat}:")
    results: dict[str, list[WrkResult]] = {name: [] for name, _, _ in WAYS}
    with tempfile.TemporaryDirectory(prefix="bench-web-workers-") as folder:
        wire = wire_servers.start_secantusdb(Path(folder) / "secantusdb")
        try:
            base = wire.uri.partition("?")[0].rstrip("/")
            for run in range(args.repeat):
                for n, (name, workers, shared) in enumerate(WAYS):
                    workdir = Path(folder) / f"run{run}-{n}"
                    workdir.mkdir()
                    uri = f"{base}/limits{run}{n}" if shared else None
                    results[name].append(one_way(wrk, workdir, workers, uri, args.seconds))
        finally:
            wire.stop()
    baseline = statistics.median(r.rps for r in results[WAYS[0][0]])
    for name, runs in results.items():
        rps = statistics.median(r.rps for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        share = f"{rps / baseline:.0%} of one worker in memory"
        print(f"  {name:34s} {rps:7.0f} req/s  p99 {p99:6.1f} ms  ({share})")


if __name__ == "__main__":
    main()
