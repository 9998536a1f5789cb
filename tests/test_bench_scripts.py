"""`make bench` runs: every benchmark script is in it, and each one starts. The benches run no test
of their own, so a helper one of them stopped exporting broke two others' imports unseen
(`bench_live_dashboards` and `bench_snapshots`, 8ce3500), and `make bench` stopped at the first."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHES = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "tests" / "bench").glob("bench_*.py"))


def bench_target() -> list[str]:
    """The scripts the Makefile's `bench` target runs, in order."""
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^bench:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None, "the Makefile has no bench target"
    commands = [line for line in recipe.group(1).splitlines() if not line.strip().startswith("#")]
    return re.findall(r"(tests/bench/bench_\w+\.py)", "\n".join(commands))


def test_make_bench_runs_every_benchmark_once() -> None:
    ran = bench_target()
    assert sorted(ran) == BENCHES


@pytest.mark.parametrize("script", BENCHES)
def test_the_benchmark_starts(script: str) -> None:
    # --help imports everything the script imports, as `make bench` runs it (a script, not a module).
    done = subprocess.run(
        [sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "usage:" in done.stdout
