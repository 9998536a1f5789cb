"""The project's Jupyter kernel, registered inside the venv so runs never depend on a system kernel."""

from __future__ import annotations

import json
import sys
from pathlib import Path

KERNEL_NAME = "workbench"
DISPLAY_NAME = "Student Data Workbench (Python 3)"


def kernel_spec_dir() -> Path:
    return Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME


def ensure_kernel() -> str:
    """Register the kernel into `sys.prefix` unless it is there and runs this interpreter."""
    spec = kernel_spec_dir() / "kernel.json"
    try:
        if json.loads(spec.read_text())["argv"][0] == sys.executable:
            return KERNEL_NAME
    except (OSError, ValueError, KeyError, IndexError):
        pass
    from ipykernel.kernelspec import install

    install(prefix=sys.prefix, kernel_name=KERNEL_NAME, display_name=DISPLAY_NAME)
    return KERNEL_NAME
