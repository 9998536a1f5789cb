"""Benchmark of the dashboard snapshots (issue 15), with 1,000,000 students behind the documents:

1. rendering: every dashboard executed in one kernel and stored, as after each run;
2. serving: `/dashboards/overview` (signed in) to 64 concurrent `wrk` clients, beside the same
   bytes served as a static file by the same server stack (uvicorn, one worker), the ceiling.
   Targets: at least 50% of the ceiling's requests/s, p99 under 250 ms;
3. time from navigation to the first decoded plot in Chromium, for each snapshot page (fresh
   browser context each load). Target under 1 s.

The documents come from the real pipeline (`bench_dashboards.build`; `--cache FILE` keeps them).

    python tests/bench/bench_snapshots.py [--students N] [--schools S] [--cache FILE]
        [--clients C] [--seconds S] [--repeat R]

Needs `wrk` (Debian/Ubuntu: `apt-get install wrk`) and Debian's `chromium`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pipeline_lib.contract.users import hash_password
from pipeline_lib.settings import Settings
from tests.bench import bench_dashboards
from tests.bench.bench_db_api import TOKEN, start_db_api
from tests.bench.bench_web import (
    JWT_SECRET,
    SERVE,
    Processes,
    find_wrk,
    free_port,
    run_wrk,
    wait_until,
)

READER, PASSWORD = "bench-reader", "bench password of some length"
SHARE_TARGET, P99_TARGET_MS, FIRST_PLOT_TARGET = 0.5, 250.0, 1.0
FIRST_PLOT = (
    "() => { const i = document.querySelector('article.dashboard-snapshot figure.wb-plot img');"
    " return i && i.complete && i.naturalWidth > 0 }"
)


def static_app() -> FastAPI:
    """The ceiling: the snapshot page's bytes as a static file (`BENCH_STATIC_DIR`), same stack."""
    app = FastAPI()
    app.mount("/", StaticFiles(directory=os.environ["BENCH_STATIC_DIR"]), name="static")
    return app


def render(client_address: str, data_dir: Path) -> dict[str, float]:
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.dashboards import snapshot

    settings = Settings(data_dir=data_dir, db_api_address=client_address, db_api_token=TOKEN)
    with DbApiClient(client_address, TOKEN, timeout=120) as client:
        rendered = snapshot.refresh(settings, client, run_id="process-bench", folder=None)
    failed = [f"{s.name}: {s.error}" for s in rendered if s.error]
    if failed:
        raise RuntimeError(f"snapshots failed: {failed}")
    return {s.name: s.seconds for s in rendered}


def session_cookie(url: str, username: str = READER, password: str = PASSWORD) -> str:
    """The session cookie of `username` signed in through the login form."""
    with httpx.Client(base_url=url, timeout=60) as http:
        csrf = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        answer = http.post("/login", data={"username": username, "password": password, "csrf": csrf})
        if answer.status_code != 303:
            raise RuntimeError(f"sign-in refused: {answer.status_code}")
        return http.cookies["wb_session"]


def first_plots(url: str, cookie: str, names: list[str], repeat: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {name: [] for name in names}
    host = url.split("//", 1)[1].split(":")[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
        )
        for _ in range(repeat):
            for name in names:
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_cookies([{"name": "wb_session", "value": cookie, "domain": host, "path": "/"}])
                page = context.new_page()
                page.goto(f"{url}/dashboards/{name}", wait_until="commit", timeout=60_000)
                page.wait_for_function(FIRST_PLOT, timeout=60_000, polling="raf")
                times[name].append(page.evaluate("() => performance.now()") / 1000)
                context.close()
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", type=int, default=1_000_000)
    parser.add_argument("--schools", type=int, default=1_000)
    parser.add_argument("--cache", type=Path, help="keep the built documents here and reuse them")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    wrk = find_wrk()
    print(
        f"snapshot benchmark: {args.students:,} students in {args.schools:,} schools; "
        f"{bench_dashboards.machine_state()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="wb-bench-snap-") as folder:
        data_dir = Path(folder) / "var"
        os.environ.update({"WORKBENCH_DB_API_TOKEN": TOKEN, "WORKBENCH_DATA_DIR": str(data_dir)})
        db_api, client = start_db_api(data_dir)
        processes = Processes(Path(folder))
        try:
            bench_dashboards.documents(client, args.students, args.schools, args.cache)
            renders = [render(client.address, data_dir) for _ in range(args.repeat)]
            client.put_document(
                "users",
                READER,
                {"scopes": ["results:read"], "password_hash": hash_password(PASSWORD), "disabled": False},
            )
            env = {
                **os.environ,
                "WORKBENCH_DB_API_ADDRESS": client.address,
                "WORKBENCH_JWT_SECRET": JWT_SECRET,
                "WORKBENCH_ACCESS_TOKEN_MINUTES": "1440",
                "BENCH_STATIC_DIR": str(Path(folder) / "static"),
            }
            urls = {}
            for name, target in (
                ("web", "web_app.main:create_app"),
                ("static", "tests.bench.bench_snapshots:static_app"),
            ):
                port = free_port()
                processes.start(name, [*SERVE, target, str(port)], env)
                urls[name] = f"http://127.0.0.1:{port}"
            (Path(folder) / "static").mkdir()
            wait_until(
                lambda: httpx.get(f"{urls['web']}/healthz").status_code == 200, processes, "the web app"
            )
            wait_until(
                lambda: httpx.get(f"{urls['static']}/x").status_code == 404, processes, "the static app"
            )
            cookie = session_cookie(urls["web"])
            page = httpx.get(f"{urls['web']}/dashboards/overview", cookies={"wb_session": cookie}, timeout=60)
            if page.status_code != 200 or "dashboard-snapshot" not in page.text:
                raise RuntimeError(f"the snapshot page did not answer: {page.status_code}")
            (Path(folder) / "static" / "overview.html").write_bytes(page.content)
            lua = Path(folder) / "cookie.lua"
            lua.write_text(f'wrk.headers["Cookie"] = "wb_session={cookie}"\n')
            served, ceiling = [], []
            for _ in range(args.repeat):
                served.append(
                    run_wrk(wrk, urls["web"], lua, args.clients, args.seconds, "/dashboards/overview")
                )
                ceiling.append(
                    run_wrk(wrk, urls["static"], None, args.clients, args.seconds, "/overview.html")
                )
                print(
                    f"  wrk: snapshot {served[-1].rps:,.0f} req/s p99 {served[-1].p99_ms:.0f} ms; "
                    f"static {ceiling[-1].rps:,.0f} req/s p99 {ceiling[-1].p99_ms:.0f} ms",
                    flush=True,
                )
            names = list(renders[0])
            plots = first_plots(
                urls["web"], cookie, [n for n in names if n != "all_results"] + ["all_results"], args.repeat
            )
        finally:
            processes.stop_all()
            client.close()
            db_api.terminate()
            db_api.wait()
    size = len(page.content)
    print(f"\nafter the runs: {bench_dashboards.machine_state()}")
    print(f"rendering every snapshot, median of {args.repeat}:")
    for name in names:
        print(f"  {name:13} {statistics.median(r[name] for r in renders):5.2f} s")
    total = statistics.median(sum(r.values()) for r in renders)
    print(f"  {'all':13} {total:5.2f} s (one kernel)")
    rps = statistics.median(r.rps for r in served)
    p99 = statistics.median(r.p99_ms for r in served)
    top = statistics.median(r.rps for r in ceiling)
    share = rps / top
    print(
        f"/dashboards/overview ({size / 1024:,.0f} KiB) to {args.clients} clients, median of {args.repeat}:"
    )
    print(
        f"  {rps:,.0f} req/s, p99 {p99:.0f} ms; the same bytes as a static file: {top:,.0f} req/s "
        f"(p99 {statistics.median(r.p99_ms for r in ceiling):.0f} ms)"
    )
    verdict = "met" if share >= SHARE_TARGET and p99 < P99_TARGET_MS else "MISSED"
    print(
        f"  {share:.0%} of the ceiling, target >= {SHARE_TARGET:.0%} "
        f"and p99 < {P99_TARGET_MS:.0f} ms: {verdict}"
    )
    print(f"time from navigation to the first plot, fresh browser context, median of {args.repeat}:")
    for name, seconds in plots.items():
        median = statistics.median(seconds)
        verdict = "met" if median < FIRST_PLOT_TARGET else "MISSED"
        print(
            f"  {name:13} {median:5.2f} s (max {max(seconds):.2f}); "
            f"target < {FIRST_PLOT_TARGET:.0f} s: {verdict}"
        )


if __name__ == "__main__":
    main()
