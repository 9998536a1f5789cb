"""What a process run's kernel imports before its first result: not scikit-learn or SciPy's solvers,
which only the prediction models and the disclosure audit use (about 0.9 s of a 2.1 s import)."""

from __future__ import annotations

import subprocess
import sys

LATER = ("sklearn", "scipy.optimize", "scipy.sparse", "scipy.stats", "statsmodels")


def test_the_process_step_imports_its_models_and_solvers_when_it_uses_them() -> None:
    check = (
        "import sys\n"
        "import pipeline_lib.process.run\n"
        f"print(' '.join(name for name in {LATER!r} if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
