"""`workbench new analysis NAME`: a new analysis notebook from the template, ready to edit and run.

The notebook lands in `notebooks/analyses/NAME.ipynb` (under the settings' notebooks folder) and
publishes under the keys `NAME:*`; `workbench run NAME` runs it, `after process NAME` in the
schedule runs it after every successful process run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

TEMPLATE = Path(__file__).resolve().parent / "templates" / "analysis.ipynb"
PLACEHOLDER = "__NAME__"

new_app = typer.Typer(help="Create a new notebook from a template.", no_args_is_help=True)


@new_app.command("analysis")
def new_analysis(
    name: Annotated[str, typer.Argument(help="lower-case letters, digits and _; its results are NAME:*")],
) -> None:
    """Create notebooks/analyses/NAME.ipynb from the template: parameters, the students read as the
    process run reads them, one worked example, and publishing with disclosure control."""
    from pipeline_lib.process.analysis_run import AnalysisNameError, check_name
    from pipeline_lib.runs.notebooks import ANALYSES, builtin_notebooks
    from pipeline_lib.settings import get_settings

    settings = get_settings()
    try:
        check_name(name)
    except AnalysisNameError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if name in builtin_notebooks(settings):
        typer.echo(
            f"error: {name!r} is a notebook of the pipeline (notebooks/{name}.ipynb); choose another",
            err=True,
        )
        raise typer.Exit(2)
    target = settings.notebooks_dir / ANALYSES / f"{name}.ipynb"
    if target.exists():
        typer.echo(f"error: {target} exists already; edit it, or remove it first", err=True)
        raise typer.Exit(2)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(TEMPLATE.read_text().replace(PLACEHOLDER, name))
    typer.echo(f"Created {target}.")
    typer.echo(f"  edit it:      workbench lab   (then open analyses/{name}.ipynb)")
    typer.echo(f"  run it:       workbench run {name}")
    typer.echo(f"  schedule it:  add the line  after process {name}  to schedules/crontab")
    typer.echo(f"  its results:  /results (keys {name}:*), GET /api/v1/results, the All results dashboard")
