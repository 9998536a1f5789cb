"""Benchmark of the fixed cost of one `workbench run`: an empty notebook, process start to archived output.

Each repeat is the command a cron line runs, as a new process: import, lease, run record, papermill
with the project kernel (start, execute, shut down), archive, final record. Median of 5.

    python tests/bench/bench_run.py [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import nbformat

from tests.bench.bench_db_api import TOKEN, start_db_api

TARGET_SECONDS = 4.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-run-") as folder:
        root = Path(folder)
        notebooks = root / "notebooks"
        notebooks.mkdir()
        empty = nbformat.v4.new_notebook()
        empty.cells = [nbformat.v4.new_code_cell("run_id = None", metadata={"tags": ["parameters"]})]
        nbformat.write(empty, notebooks / "empty.ipynb")
        db_api, client = start_db_api(root / "var")
        env = {
            **os.environ,
            "WORKBENCH_DATA_DIR": str(root / "var"),
            "WORKBENCH_DB_API_ADDRESS": client.address,
            "WORKBENCH_DB_API_TOKEN": TOKEN,
            "WORKBENCH_NOTEBOOKS_DIR": str(notebooks),
        }
        try:
            seconds = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "pipeline_lib.cli", "run", "empty"],
                    env=env, capture_output=True, text=True,
                )  # fmt: skip
                seconds.append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise SystemExit(f"the run failed: {done.stdout}{done.stderr}")
            runs = client.list_documents("runs", limit=100)
            assert len(runs) == args.repeat and all(Path(r["output_path"]).is_file() for r in runs)
            inside = statistics.median(r["duration_seconds"] for r in runs)
        finally:
            client.close()
            db_api.terminate()
            db_api.wait()
    median = statistics.median(seconds)
    print(f"workbench run of an empty notebook, {args.repeat} runs on {os.cpu_count()} cores:")
    print(f"  command wall time: median {median:.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f})")
    print(f"  of which the recorded run (lease to final record): median {inside:.2f} s")
    print(f"  target < {TARGET_SECONDS:.0f} s: {'met' if median < TARGET_SECONDS else 'MISSED'}")


if __name__ == "__main__":
    main()
