"""Benchmark of the live dashboards through the web app (issue 15), with 1,000,000 students behind
the documents (the documents of `bench_dashboards`; `--cache FILE` shares them):

1. time from navigation to the first decoded plot for each dashboard, opened by a signed-in
   analyst through the web app's proxy (HTTP and the kernel's WebSocket), on a preheated kernel,
   in a fresh browser and with Voilà's scripts cached; beside the same page straight from Voilà.
   Target under 3 s;
2. memory per live kernel: `--cap` pages held open at once (the cap), each kernel's resident
   (RSS) and unique (USS) memory;
3. at the cap: what the next viewer gets (the snapshot, with the line saying why) and how fast,
   and that closing a page frees its slot.

    python tests/bench/bench_live_dashboards.py [--cache FILE] [--repeat R] [--cap N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
import psutil
from playwright.sync_api import Browser, Page

from pipeline_lib.contract.users import hash_password
from pipeline_lib.dashboards.catalog import live_path
from pipeline_lib.settings import LIVE_DASHBOARDS_PATH
from tests.bench import bench_dashboards, bench_snapshots
from tests.bench.bench_dashboards import (
    DASHBOARDS,
    FIRST_PLOT,
    POOLS,
    Loader,
    kernels_waiting,
    machine_state,
)
from tests.bench.bench_db_api import TOKEN, start_db_api
from tests.bench.bench_web import JWT_SECRET, SERVE, Processes, free_port, wait_until

ANALYST, PASSWORD = "bench-analyst", "bench password of some length"
TARGET_SECONDS = 3.0


def first_plots(browser: Browser, web: str, voila: str, log: Path, cookie: str, repeat: int) -> dict:
    """Per dashboard and way in: seconds from navigation to the first decoded plot."""
    cookies = [{"name": "wb_session", "value": cookie, "url": web}]
    proxied = Loader(browser, f"{web}{LIVE_DASHBOARDS_PATH}", log, cookies)
    direct = Loader(browser, voila, log)
    proxied.first_plot(DASHBOARDS[0], cached=True)  # fills the warm browser's cache
    direct.loads = proxied.loads
    times: dict[str, dict[str, list[float]]] = {
        n: {"proxied": [], "cached": [], "direct": []} for n in DASHBOARDS
    }
    ways = [("proxied", proxied, False), ("cached", proxied, True), ("direct", direct, False)]
    for turn in range(repeat):
        for name in DASHBOARDS:
            # Each way goes first in turn: the first load after a pause meets the most settled kernel.
            for kind, loader, cached in ways[turn % 3 :] + ways[: turn % 3]:
                times[name][kind].append(loader.first_plot(name, cached=cached))
                # Both loaders wait for the same pools: each counts every page served.
                proxied.loads = direct.loads = max(proxied.loads, direct.loads)
            row = ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times[name].items())
            print(f"  {name}: {row}", flush=True)
    return times


def kernel_memory(voila_pid: int, kernel_id: str) -> tuple[float, float]:
    """RSS and USS (MiB) of the kernel process whose connection file names `kernel_id`."""
    for child in psutil.Process(voila_pid).children(recursive=True):
        if any(kernel_id in part for part in child.cmdline()):
            info = child.memory_full_info()
            return info.rss / 2**20, info.uss / 2**20
    raise RuntimeError(f"no process for kernel {kernel_id}")


def open_live(browser: Browser, web: str, cookie: str, name: str) -> tuple[Page, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "wb_session", "value": cookie, "url": web}])
    page = context.new_page()
    page.goto(f"{web}{live_path(name)}", wait_until="commit", timeout=120_000)
    return page, time.perf_counter()


def at_the_cap(
    browser: Browser, web: str, voila_pid: int, log: Path, cookies: list[str], cap: int, loads: int
) -> dict:
    """`cap` live pages held open, each by an analyst of its own (one account may hold only
    WORKBENCH_VOILA_KERNELS_PER_ACCOUNT); their kernels' memory; what the next viewer, another
    analyst, gets. `cookies`: sessions of `cap` + 1 analysts."""
    bench_dashboards.wait_until(lambda: kernels_waiting(log) >= loads, 180, "the pools to refill")
    held = []
    for i in range(cap):
        page, _ = open_live(browser, web, cookies[i], DASHBOARDS[i % len(DASHBOARDS)])
        page.wait_for_function(FIRST_PLOT, timeout=120_000, polling="raf")
        held.append(page)
    time.sleep(2)  # the kernels' sockets are open and their first plots drawn
    ids = [re.search(r'"kernelId": *"([0-9a-f-]{36})"', page.content())[1] for page in held]  # type: ignore[index]
    memory = [kernel_memory(voila_pid, kernel_id) for kernel_id in ids]
    started = time.perf_counter()
    extra, _ = open_live(browser, web, cookies[cap], "overview")
    extra.wait_for_selector(".live-refused", timeout=60_000)
    refused_seconds = time.perf_counter() - started
    landed, notice = extra.url, extra.inner_text(".live-refused")
    extra.context.close()
    held.pop().context.close()  # one page closed: its slot is free again
    time.sleep(2)
    again, _ = open_live(browser, web, cookies[cap], "overview")
    again.wait_for_function(FIRST_PLOT, timeout=120_000, polling="raf")
    freed = LIVE_DASHBOARDS_PATH in again.url
    again.context.close()
    for page in held:
        page.context.close()
    return {"memory": memory, "landed": landed, "notice": notice, "seconds": refused_seconds, "freed": freed}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", type=int, default=1_000_000)
    parser.add_argument("--schools", type=int, default=1_000)
    parser.add_argument("--cache", type=Path, help="keep the built documents here and reuse them")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cap", type=int, default=4, help="WORKBENCH_VOILA_MAX_KERNELS for the run")
    args = parser.parse_args()
    print(
        f"live dashboards benchmark: {args.students:,} students in {args.schools:,} schools; "
        f"{machine_state()}"
    )
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="wb-bench-live-") as folder:
        data_dir = Path(folder) / "var"
        os.environ.update({"WORKBENCH_DB_API_TOKEN": TOKEN, "WORKBENCH_DATA_DIR": str(data_dir)})
        db_api, client = start_db_api(data_dir)
        processes = Processes(Path(folder))
        try:
            bench_dashboards.documents(client, args.students, args.schools, args.cache)
            analysts = [ANALYST, *(f"{ANALYST}-{i}" for i in range(1, args.cap + 1))]
            user = {"scopes": ["results:read", "analyst"], "password_hash": hash_password(PASSWORD)}
            for name in analysts:
                client.put_document("users", name, {**user, "disabled": False})
            voila_port, web_port = free_port(), free_port()
            env = {
                **os.environ,
                "WORKBENCH_DB_API_ADDRESS": client.address,
                "WORKBENCH_JWT_SECRET": JWT_SECRET,
                "WORKBENCH_VOILA_PORT": str(voila_port),
                "WORKBENCH_WEB_PORT": str(web_port),
                "WORKBENCH_VOILA_MAX_KERNELS": str(args.cap),
            }
            voila = processes.start(
                "voila", [sys.executable, "-m", "pipeline_lib.cli.dashboards", "--pool-size", "1"], env
            )
            processes.start("web", [*SERVE, "web_app.main:create_app", str(web_port)], env)
            web, log = f"http://127.0.0.1:{web_port}", Path(folder) / "voila.log"
            wait_until(lambda: httpx.get(f"{web}/healthz").status_code == 200, processes, "the web app")
            started = time.perf_counter()
            bench_dashboards.wait_until(lambda: kernels_waiting(log) >= POOLS, 180, "preheating")
            print(f"Voilà ready, {POOLS} kernels preheated, in {time.perf_counter() - started:.1f} s")
            cookies = [bench_snapshots.session_cookie(web, name, PASSWORD) for name in analysts]
            voila_url = f"http://127.0.0.1:{voila_port}{LIVE_DASHBOARDS_PATH}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
                )
                times = first_plots(browser, web, voila_url, log, cookies[0], args.repeat)
                # Every pool full again: each pool's first kernel, the warm-up load, three per dashboard.
                loads = POOLS + 1 + 3 * len(DASHBOARDS) * args.repeat
                cap = at_the_cap(browser, web, voila.pid, log, cookies, args.cap, loads)
                browser.close()
            served = bench_dashboards.server_seconds(log)
        finally:
            processes.stop_all()
            client.close()
            db_api.terminate()
            db_api.wait()
    print(f"\nafter the runs: {machine_state()}")
    print(f"time from navigation to the first plot, preheated kernel, median of {args.repeat}:")
    for name, kinds in times.items():
        proxied = statistics.median(kinds["proxied"])
        verdict = "met" if proxied < TARGET_SECONDS else "MISSED"
        print(
            f"  {name:13} through the web app {proxied:5.2f} s (max {max(kinds['proxied']):.2f}), "
            f"scripts cached {statistics.median(kinds['cached']):5.2f} s; straight from Voilà "
            f"{statistics.median(kinds['direct']):5.2f} s; Voilà answers in "
            f"{statistics.median(served[name]):.2f} s; target < {TARGET_SECONDS:.0f} s: {verdict}"
        )
    rss = [m[0] for m in cap["memory"]]
    uss = [m[1] for m in cap["memory"]]
    print(
        f"memory per live kernel ({len(rss)} open at the cap of {args.cap}): "
        f"median RSS {statistics.median(rss):.0f} MiB "
        f"(max {max(rss):.0f}), unique {statistics.median(uss):.0f} MiB (max {max(uss):.0f})"
    )
    print(
        f"the next viewer at the cap: sent to {cap['landed'].split(str(web_port), 1)[1]} "
        f"in {cap['seconds']:.2f} s, "
        f'told "{cap["notice"]}"'
    )
    print(f"after one page closed, a viewer got a live dashboard again: {'yes' if cap['freed'] else 'NO'}")


if __name__ == "__main__":
    main()
