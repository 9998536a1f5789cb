"""`workbench run`, `workbench schedule show|install` and `workbench scheduler`."""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated, Any

import typer

from pipeline_lib.logs import configure_logging
from pipeline_lib.settings import get_settings

schedule_app = typer.Typer(
    help="The schedule in schedules/crontab: show it, install it into cron.", no_args_is_help=True
)

# Exit codes of `workbench run`: skipped is not a failure (another run is doing the work).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


RUN_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def _parameters(args: list[str]) -> dict[str, Any]:
    """`-p NAME VALUE` triples (typer has no option with two values, so they are parsed here)."""
    from pipeline_lib.runs.executor import parse_value

    parameters: dict[str, Any] = {}
    rest = list(args)
    while rest:
        flag = rest.pop(0)
        if flag not in ("-p", "--parameter") or len(rest) < 2:
            raise typer.BadParameter(
                f"expected -p NAME VALUE, got {' '.join([flag, *rest[:2]])!r}", param_hint="-p"
            )
        name, value = rest.pop(0), rest.pop(0)
        if not name.isidentifier():
            raise typer.BadParameter(f"{name!r} is not a parameter name", param_hint="-p")
        parameters[name] = parse_value(value)
    return parameters


def run(
    ctx: typer.Context,
    notebook: Annotated[
        str, typer.Argument(help="clean, process, all (clean then process), or another notebook's name")
    ],
    timeout: Annotated[
        int | None, typer.Option(help="seconds one cell may run before the run fails as timed_out")
    ] = None,
    triggered_by: Annotated[str, typer.Option(help="recorded with the run: cli, cron, scheduler")] = "cli",
    wait: Annotated[
        bool | None,
        typer.Option(
            "--wait/--no-wait",
            help="while another run of the notebook is in progress, wait for it (default from a "
            "terminal) or skip (default for the scheduler and cron)",
        ),
    ] = None,
) -> None:
    """Execute a notebook with papermill under a new run id, record the run and archive its output.

    Notebook parameters: -p NAME VALUE (repeatable; VALUE is read as a number, true/false, none or text).
    Exit code 0: succeeded (or skipped because another run holds the lease); 1: failed or timed out;
    2: a usage error (unknown notebook or parameter).
    """
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.runs.alerts import headline
    from pipeline_lib.runs.executor import UnknownNotebook, execute_all, notebook_path
    from pipeline_lib.runs.schedule import ALL
    from pipeline_lib.wire.requests import DbApiCallError

    configure_logging("WARNING")
    settings = get_settings()
    if timeout is not None:
        if timeout < 1:
            typer.echo("error: --timeout must be at least 1 second", err=True)
            raise typer.Exit(EXIT_USAGE)
        settings = settings.model_copy(update={"run_cell_timeout_seconds": timeout})
    parameters = _parameters(ctx.args)
    names = list(ALL) if notebook == "all" else [notebook]
    try:
        for name in names:
            notebook_path(settings, name)
    except UnknownNotebook as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        # The run's records are its own: never fenced, even by a run that started this one.
        with DbApiClient.from_settings(settings, fence=None) as client:
            done = execute_all(
                names,
                parameters,
                settings,
                client,
                triggered_by=triggered_by,
                echo=typer.echo,
                wait=triggered_by == "cli" if wait is None else wait,
            )
    except DbApiCallError as exc:
        typer.echo(f"error: cannot record the run: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    for record in done:
        counts = ", ".join(
            f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in record.counts.items()
        )
        line = f"run {record.run_id}: {record.status}"
        if record.duration_seconds is not None:
            line += f" in {record.duration_seconds:.1f} s"
        if counts:
            line += f" ({counts})"
        if record.note:
            line += f": {record.note}"
        typer.echo(line)
        if record.error:
            where = f" in cell {record.error.cell_index}" if record.error.cell_index is not None else ""
            # One line (a Spark error is pages of Java); the whole text is in the record and notebook.
            typer.echo(f"  {record.status}{where}: {headline(record.error)}", err=True)
        if record.output_path:
            typer.echo(f"  output notebook: {record.output_path}")
    last = done[-1]
    if last.error and last.error.exception == "UnknownParameter":
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_OK if last.status in ("succeeded", "skipped") else EXIT_FAILED)


def _load_schedule() -> list:
    from pipeline_lib.runs.schedule import ScheduleError, load

    try:
        return load(get_settings().schedule_file)
    except ScheduleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


@schedule_app.command("show")
def schedule_show(count: Annotated[int, typer.Option(help="fire times to list per job")] = 3) -> None:
    """Print each scheduled job and its next fire times (machine's local time)."""
    jobs = _load_schedule()
    now = dt.datetime.now().astimezone()
    typer.echo(f"{get_settings().schedule_file} ({now:%Z}):")
    for job in jobs:
        times = ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in job.next_times(now, count))
        typer.echo(f"  line {job.line}: {job.cron:<15} workbench run {job.command:<20} next: {times}")


@schedule_app.command("install")
def schedule_install(
    target: Annotated[
        str,
        typer.Option(help="cron.d (/etc/cron.d, needs root), user (crontab -) or auto (cron.d when root)"),
    ] = "auto",
    name: Annotated[str, typer.Option(help="file name under /etc/cron.d")] = "student-data-workbench",
    print_only: Annotated[
        bool, typer.Option("--print", help="print the cron table instead of installing")
    ] = False,
) -> None:
    """Install the schedule into the system's cron, with absolute paths, PATH and log files."""
    from pipeline_lib.runs import cron_install

    jobs = _load_schedule()
    settings = get_settings()
    if target not in ("auto", "cron.d", "user"):
        typer.echo("error: --target is cron.d, user or auto", err=True)
        raise typer.Exit(EXIT_USAGE)
    if target == "auto":
        target = "cron.d" if os.geteuid() == 0 and cron_install.CRON_D.is_dir() else "user"
    if print_only:
        typer.echo(cron_install.table(jobs, settings, user="root" if target == "cron.d" else None), nl=False)
        return
    try:
        if target == "cron.d":
            where = str(cron_install.install_cron_d(jobs, settings, name))
        else:
            where = cron_install.install_user_crontab(jobs, settings)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: could not install the schedule: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(
        f"Installed {len(jobs)} job(s) into {where}; logs go to {settings.data_dir.resolve() / 'logs'}."
    )
    typer.echo("cron must be running (e.g. `cron` as root); `workbench schedule show` lists the next times.")


def scheduler() -> None:
    """Run the schedule in the foreground without system cron, until Ctrl-C or SIGTERM.

    Prints one line per failed run (notebook, run id, error, its page); runs' output goes to
    <data dir>/logs/scheduler-<notebook>.log."""
    from pipeline_lib.runs.scheduler import serve

    configure_logging()
    jobs = _load_schedule()

    def note(text: str) -> None:  # the scheduler's own log; failed runs go to standard output
        typer.echo(text, err=True)

    note(f"scheduler: {len(jobs)} job(s) from {get_settings().schedule_file}")
    serve(get_settings(), echo=typer.echo, note=note)
