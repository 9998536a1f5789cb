"""`workbench lab`: JupyterLab on the project's notebooks, with its kernel and resolved settings."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from pipeline_lib.cli.addresses import LOOPBACK
from pipeline_lib.settings import child_environment, get_settings


def lab(
    port: Annotated[int, typer.Option(help="port for JupyterLab")] = 8888,
    open_browser: Annotated[bool, typer.Option("--browser/--no-browser", help="open a browser tab")] = True,
) -> None:
    """Open JupyterLab on notebooks/ with the project's kernel (registered into the venv)."""
    from pipeline_lib.runs.kernel import KERNEL_NAME, ensure_kernel

    ensure_kernel()
    settings = get_settings()
    typer.echo(f"JupyterLab on {settings.notebooks_dir}; choose the kernel '{KERNEL_NAME}'.")
    args = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--notebook-dir={settings.notebooks_dir}",
        f"--ip={LOOPBACK}",
        f"--port={port}",
        f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}",
    ]
    if not open_browser:
        args.append("--no-browser")
    if os.geteuid() == 0:  # containers often run as root; Jupyter refuses that unless told
        args.append("--allow-root")
    # Kernels run in notebooks/: they get the settings resolved here, not from their own folder.
    os.execve(sys.executable, args, child_environment(settings))
