"""`workbench run`, `workbench schedule show|install` and `workbench scheduler`."""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline_lib.logs import configure_logging
from pipeline_lib.settings import Settings, get_settings

if TYPE_CHECKING:
    from pipeline_lib.runs.schedule import Job

schedule_app = typer.Typer(
    help="The schedule in schedules/crontab: show it, install it into cron.", no_args_is_help=True
)

# Exit codes of `workbench run`: skipped is not a failure (another run is doing the work).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


RUN_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def _parameters(args: list[str]) -> dict[str, str]:
    """`-p NAME VALUE` triples (typer has no option with two values, so they are parsed here);
    the values stay text until they are read for the types their notebook declares."""
    parameters: dict[str, str] = {}
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
        parameters[name] = value
    return parameters


def _checked(settings: Settings, notebook: str, texts: dict[str, str]) -> tuple[list[str], dict[str, Any]]:
    """The notebooks `workbench run NOTEBOOK` executes, and its `-p` values read and checked for the
    types and ranges their parameters cells declare (pipeline_lib/runs/parameters.py).

    Raises UnknownNotebook or ParameterError, before any connection or kernel."""
    from pipeline_lib.runs.executor import notebook_path
    from pipeline_lib.runs.parameters import read_notebook, resolve
    from pipeline_lib.runs.schedule import ALL

    names = list(ALL) if notebook == "all" else [notebook]
    declared = {name: read_notebook(notebook_path(settings, name)) for name in names}
    return names, resolve(declared, texts)


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

    Notebook parameters: -p NAME VALUE (repeatable; VALUE is read for the parameter's declared type:
    a number, true/false, none or text).
    Exit code 0: succeeded (or skipped because another run holds the lease); 1: failed or timed out;
    2: a usage error (unknown notebook or parameter, or a value not of the type or in the range the
    notebook's parameters cell declares, e.g. `seed: int = 1  # 0..2_147_483_647`).
    """
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.runs.alerts import headline
    from pipeline_lib.runs.executor import UnknownNotebook, execute_all
    from pipeline_lib.runs.parameters import USAGE_ERRORS, ParameterError
    from pipeline_lib.wire.requests import DbApiCallError

    configure_logging("WARNING")
    settings = get_settings()
    if timeout is not None:
        if timeout < 1:
            typer.echo("error: --timeout must be at least 1 second", err=True)
            raise typer.Exit(EXIT_USAGE)
        settings = settings.model_copy(update={"run_cell_timeout_seconds": timeout})
    try:
        names, parameters = _checked(settings, notebook, _parameters(ctx.args))
    except (UnknownNotebook, ParameterError) as exc:
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
    if last.error and last.error.exception in USAGE_ERRORS:
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_OK if last.status in ("succeeded", "skipped") else EXIT_FAILED)


def _load_schedule() -> list:
    from pipeline_lib.runs.schedule import ScheduleError, load

    try:
        return load(get_settings().schedule_file)
    except ScheduleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _refusal(job: Job, settings: Settings) -> str | None:
    """Why `workbench run` would refuse the job's options at once (an unknown option, notebook or
    parameter, a value of the wrong type or out of range), or None. Read by the run command's own
    parser, so it says exactly what cron's run would."""
    from pipeline_lib.runs.executor import UnknownNotebook
    from pipeline_lib.runs.parameters import ParameterError

    command = typer.main.get_command(_run_only)
    try:
        with command.make_context("workbench run", list(job.args)) as ctx:
            _checked(settings, ctx.params["notebook"], _parameters(ctx.args))
    except typer.TyperException as exc:  # what the command's parser refuses (typer's own click)
        return exc.format_message()
    except (UnknownNotebook, ParameterError) as exc:
        return str(exc)
    return None


@schedule_app.command("show")
def schedule_show(count: Annotated[int, typer.Option(help="fire times to list per job")] = 3) -> None:
    """Print each scheduled job and its next fire times (machine's local time); a job that
    `workbench run` would refuse (e.g. `-p seed abc`) is flagged, and the exit code is then 2."""
    jobs = _load_schedule()
    settings = get_settings()
    now = dt.datetime.now().astimezone()
    typer.echo(f"{settings.schedule_file} ({now:%Z}):")
    refused = 0
    for job in jobs:
        times = ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in job.next_times(now, count))
        typer.echo(f"  line {job.line}: {job.cron:<15} workbench run {job.command:<20} next: {times}")
        problem = _refusal(job, settings)
        if problem:
            refused += 1
            typer.echo(f"    error: {problem}")
    if refused:
        typer.echo(
            f"error: `workbench run` would refuse {refused} job(s) of {settings.schedule_file}", err=True
        )
        raise typer.Exit(EXIT_USAGE)


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


# `workbench run` alone, to read a schedule line's options as the command does.
_run_only = typer.Typer()
_run_only.command(context_settings=RUN_SETTINGS)(run)


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
