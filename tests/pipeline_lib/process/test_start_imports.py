"""What a process run's kernel imports before its first result: not scikit-learn or the solvers,
which only the prediction models and the disclosure audit use (about 0.9 s of a 2.1 s import)."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LIBRARIES = {"highspy", "patsy", "scipy", "sklearn", "statsmodels"}
LATER = ("highspy", "sklearn", "scipy.optimize", "scipy.sparse", "scipy.stats", "statsmodels")


def test_the_process_step_imports_its_models_and_solvers_when_it_uses_them() -> None:
    check = (
        "import sys\n"
        "import pipeline_lib.process.run\n"
        f"print(' '.join(name for name in {LATER!r} if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def _imported_when_run() -> set[str]:
    """The modules of LATER's libraries that functions of the process step import when they run."""
    found = set()
    for path in (ROOT / "pipeline_lib" / "process").rglob("*.py"):
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    found.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    for alias in node.names:  # `from scipy import stats` imports the module scipy.stats
                        inner = f"{node.module}.{alias.name}"
                        found.add(inner if _is_module(inner) else node.module)
    return {name for name in found if name.split(".")[0] in LIBRARIES}


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent is a module, not a package
        return False


def test_a_warm_kernel_imports_everything_the_process_step_imports_when_it_runs() -> None:
    from pipeline_lib.process.run import WARM_IMPORTS

    assert _imported_when_run() <= set(WARM_IMPORTS)
    assert all(importlib.util.find_spec(name) for name in WARM_IMPORTS)
