"""`workbench run`, `workbench schedule show|install` and `workbench scheduler`."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline_lib.logs import configure_logging
from pipeline_lib.settings import Settings, get_settings

if TYPE_CHECKING:
    from pipeline_lib.dashboards.snapshot import Snapshot
    from pipeline_lib.runs.executor import NotRun
    from pipeline_lib.runs.kernel_ahead import KernelAhead
    from pipeline_lib.runs.records import RunRecord
    from pipeline_lib.runs.schedule import Job, Schedule

schedule_app = typer.Typer(
    help="The schedule in schedules/crontab: show it, install it into cron.", no_args_is_help=True
)

# Exit codes of `workbench run`: skipped is not a failure (another run is doing the work).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


RUN_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}
RUN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")  # as runs.records.RunRecord takes it


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


def _checked(
    settings: Settings, notebook: str, texts: dict[str, str]
) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """The notebooks `workbench run NOTEBOOK` executes, what each depends on, and its `-p` values
    read and checked for the types and ranges their parameters cells declare
    (pipeline_lib/runs/parameters.py).

    Raises UnknownNotebook or ParameterError, before any connection or kernel. For `all`, an
    analysis whose parameters cell does not read is left to its run, which fails saying why,
    so one broken analysis does not stop the others."""
    from pipeline_lib.runs.notebooks import notebook_path, plan
    from pipeline_lib.runs.parameters import ParametersCellError, read_notebook, resolve
    from pipeline_lib.runs.schedule import ALL

    names, needs = plan(notebook, settings)
    declared = {}
    for name in names:
        try:
            declared[name] = read_notebook(notebook_path(settings, name))
        except ParametersCellError:
            if notebook != "all" or name in ALL:
                raise
            declared[name] = {}
    return names, needs, resolve(declared, texts)


def run(
    ctx: typer.Context,
    notebook: Annotated[
        str,
        typer.Argument(
            help="clean, process, all (clean, process, then every analysis), or another notebook's "
            "name (notebooks/NAME.ipynb or notebooks/analyses/NAME.ipynb)"
        ),
    ],
    timeout: Annotated[
        int | None, typer.Option(min=1, help="seconds one cell may run before the run fails as timed_out")
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
    after_run: Annotated[
        str | None,
        typer.Option(help="the run whose success started this one (recorded; set for `after` lines)"),
    ] = None,
    followers_from: Annotated[
        Path | None,
        typer.Option(
            help="a schedule file: once this run succeeds, run its `after` lines that follow it "
            "(set by the scheduler and installed cron)"
        ),
    ] = None,
) -> None:
    """Execute a notebook with papermill under a new run id, record the run and archive its output.

    Notebook parameters: -p NAME VALUE (repeatable; VALUE is read for the parameter's declared type:
    a number, true/false, none or text).
    `all` runs clean, then process, then every notebook in notebooks/analyses/ (by name); a notebook
    whose upstream did not succeed is skipped (not run), one analysis failing does not stop the others.
    Exit code 0: succeeded (or skipped because another run holds the lease); 1: a run failed or timed
    out; 2: a usage error (unknown notebook or parameter, or a value not of the type or in the range the
    notebook's parameters cell declares, e.g. `seed: int = 1  # 0..2_147_483_647`).
    """
    from pipeline_lib.runs.kernel_ahead import start_ahead, wait_for_shut_down
    from pipeline_lib.runs.notebooks import UnknownNotebook, notebook_path
    from pipeline_lib.runs.parameters import ParameterError
    from pipeline_lib.runs.quick_exit import freeze_heap_at_exit
    from pipeline_lib.runs.warm_kernels import mark_running

    configure_logging("WARNING")
    freeze_heap_at_exit()  # the command's own teardown took 0.2 s
    settings = get_settings()
    if timeout is not None:
        if timeout < 1:
            typer.echo("error: --timeout must be at least 1 second", err=True)
            raise typer.Exit(EXIT_USAGE)
        settings = settings.model_copy(update={"run_cell_timeout_seconds": timeout})
    if after_run is not None and not RUN_ID.fullmatch(after_run):
        typer.echo(f"error: --after-run {after_run!r} is not a run id", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        names, needs, parameters = _checked(settings, notebook, _parameters(ctx.args))
    except (UnknownNotebook, ParameterError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    mark_running(settings)  # no warm kernel starts meanwhile
    rendering = _RenderingKernel(settings)
    first: KernelAhead | None = None
    try:
        # The first notebook's kernel starts (and imports) while this command imports the rest (~0.5 s).
        first = start_ahead(notebook_path(settings, names[0]), settings)
        done = _execute_all(
            names,
            needs,
            parameters,
            settings,
            after_run=after_run,
            triggered_by=triggered_by,
            wait=triggered_by == "cli" if wait is None else wait,
            first=first,
            rendering=rendering,
        )
    finally:
        if first is not None:
            first.shut_down()  # if no run took it
        rendering.shut_down()
        wait_for_shut_down()  # the kernels asked to stop, each exiting while the next step ran
    followed = True
    if followers_from is not None:
        from pipeline_lib.runs.scheduler import run_followers

        # The settings as given: this run's --timeout is not its followers'.
        followed = run_followers(done, followers_from, get_settings(), triggered_by=triggered_by)
    raise typer.Exit(_exit_code(done, followed))


def _execute_all(
    names: list[str],
    needs: dict[str, str],
    parameters: dict[str, Any],
    settings: Settings,
    *,
    after_run: str | None,
    triggered_by: str,
    wait: bool,
    first: KernelAhead | None,
    rendering: _RenderingKernel,
) -> list[RunRecord | NotRun]:
    """Run the notebooks, report each, then render the dashboard snapshots."""
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.runs.executor import execute_all
    from pipeline_lib.wire.requests import DbApiCallError

    try:
        # The run's records are its own: never fenced, even by a run that started this one.
        with DbApiClient.from_settings(settings, fence=None) as client:
            done = execute_all(
                names,
                parameters,
                settings,
                client,
                needs=needs,
                after_run_id=after_run,
                triggered_by=triggered_by,
                echo=typer.echo,
                wait=wait,
                before_last=rendering.start,
                last_results=rendering.render_early,
                first=first,
            )
        for outcome in done:
            _report(outcome)
        _refresh_dashboards(done, settings, rendering)
    except DbApiCallError as exc:
        typer.echo(f"error: cannot record the run: {exc}", err=True)
        from pipeline_lib.runs import alerts

        unrecorded = alerts.unrecorded(names, triggered_by, str(exc))
        if alerts.should_announce(unrecorded):  # a scheduled run: nobody watches its terminal
            alerts.announce(unrecorded, settings)
        raise typer.Exit(EXIT_FAILED) from None
    return done


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While rendering, SIGTERM (the scheduler or `workbench up` stopping) interrupts like Ctrl-C,
    so the rendering kernel (in a session of its own) is shut down, not left behind."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _RenderingKernel:
    """The dashboard snapshots' kernel, started as the last notebook of a run starts, so it has
    started and imported what the dashboards import by the time they are rendered; they render
    as soon as that notebook has written its results (`render_early`), while it shows them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kernel: KernelAhead | None = None
        self.early: _EarlyRendering | None = None

    def start(self) -> None:
        from pipeline_lib.dashboards import snapshot

        if self.kernel is None:
            self.kernel = snapshot.kernel_ahead(self.settings)

    def render_early(self, run_id: str) -> None:
        """Render the snapshots now, in a thread, in the kernel started ahead (which it takes)."""
        if self.kernel is not None and self.early is None:
            kernel, self.kernel = self.kernel, None
            self.early = _EarlyRendering(self.settings, run_id, kernel)

    def shut_down(self) -> None:
        if self.kernel is not None:
            self.kernel.shut_down(now=True)  # it only imported: nothing to finish
            self.kernel = None
        if self.early is not None:
            self.early.stop()


class _EarlyRendering:
    """The snapshots rendering in a thread while the last notebook shows what it wrote: on the
    second core, the rest of that notebook and the rendering (seconds each) overlap."""

    def __init__(self, settings: Settings, run_id: str, kernel: KernelAhead) -> None:
        self.run_id, self.kernel = run_id, kernel
        self.snapshots: list[Snapshot] | None = None
        self.error: BaseException | None = None
        # A daemon: stopped (its kernel killed) on an interrupt, it is not waited for at exit.
        self.thread = threading.Thread(target=self._render, args=(settings,), name="snapshots", daemon=True)
        self.thread.start()

    def _render(self, settings: Settings) -> None:
        from pipeline_lib.dashboards import snapshot

        try:
            self.snapshots = snapshot.render(
                snapshot.servable(settings), settings, run_id=self.run_id, kernel=self.kernel
            )
        except BaseException as exc:  # reported by the main thread, as a rendering there would be
            self.error = exc

    def result(self) -> list[Snapshot]:
        """The rendered snapshots, once done (or the rendering's error). Waited for in steps, so a
        SIGTERM (a KeyboardInterrupt here) is raised at once."""
        while self.thread.is_alive():
            self.thread.join(0.5)
        if self.error is not None:
            raise self.error
        assert self.snapshots is not None
        return self.snapshots

    def stop(self) -> None:
        """Kill its kernel: a cell running there fails, and the thread ends."""
        self.kernel.shut_down(now=True)


def _refresh_dashboards(
    done: list[RunRecord | NotRun], settings: Settings, rendering: _RenderingKernel
) -> None:
    """After notebooks ran (succeeded or not: the pages say how fresh their figures are), render the
    dashboard snapshots the web app serves, archived beside the last run, in the kernel started
    ahead if there is one (or take those it rendered early, as the last notebook wrote its results).
    A snapshot that fails keeps the previous one and is reported; it does not fail the run."""
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.dashboards import snapshot
    from pipeline_lib.runs.executor import NotRun, archive_path
    from pipeline_lib.wire.requests import DbApiCallError

    ran = [r for r in done if not isinstance(r, NotRun) and r.status != "skipped"]
    if not ran or not settings.dashboard_snapshots:
        return
    last = ran[-1]
    folder = archive_path(settings, last).with_name(f"{last.run_id}-dashboards")
    early = rendering.early if rendering.early is not None and rendering.early.run_id == last.run_id else None
    try:
        with _sigterm_interrupts(), DbApiClient.from_settings(settings, fence=None) as client:
            if early is None:
                rendered = snapshot.refresh(
                    settings, client, run_id=last.run_id, folder=folder, kernel=rendering.kernel
                )
            else:
                rendered = early.result()
                snapshot.keep(client, rendered, folder)
    except KeyboardInterrupt:
        rendering.shut_down()
        typer.echo("dashboard snapshots: stopped; the previous ones stay", err=True)
        return
    except (DbApiCallError, OSError, RuntimeError) as exc:  # the db-api, the kernel, a timeout
        typer.echo(f"dashboard snapshots: not rendered: {exc}", err=True)
        return
    good = [s for s in rendered if s.error is None]
    if good:
        seconds = sum(s.seconds for s in rendered)
        typer.echo(f"dashboard snapshots: {len(good)} rendered in {seconds:.1f} s ({folder})")
    for failed in (s for s in rendered if s.error is not None):
        typer.echo(
            f"dashboard snapshot {failed.name}: failed, the previous one stays: {failed.error}", err=True
        )


def _report(outcome: RunRecord | NotRun) -> None:
    """A run's lines: status, duration, counts, the run it followed; its error; its output notebook."""
    from pipeline_lib.runs.alerts import headline
    from pipeline_lib.runs.executor import NotRun

    if isinstance(outcome, NotRun):
        typer.echo(f"run {outcome.notebook}: skipped: {outcome.reason}")
        return
    record = outcome
    counts = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in record.counts.items())
    line = f"run {record.run_id}: {record.status}"
    if record.duration_seconds is not None:
        line += f" in {record.duration_seconds:.1f} s"
    if counts:
        line += f" ({counts})"
    if record.after_run_id:
        line += f", after run {record.after_run_id}"
    if record.note:
        line += f": {record.note}"
    typer.echo(line)
    if record.error:
        where = f" in cell {record.error.cell_index}" if record.error.cell_index is not None else ""
        # One line (a Spark error is pages of Java); the whole text is in the record and notebook.
        typer.echo(f"  {record.status}{where}: {headline(record.error)}", err=True)
    if record.output_path:
        typer.echo(f"  output notebook: {record.output_path}")


def _exit_code(done: list[RunRecord | NotRun], followed: bool) -> int:
    """2 for a lone run refused for its parameters; 1 if any run (or follower) failed; else 0."""
    from pipeline_lib.runs.executor import NotRun
    from pipeline_lib.runs.parameters import USAGE_ERRORS

    ran = [r for r in done if not isinstance(r, NotRun)]
    if len(done) == 1 and ran and ran[0].error and ran[0].error.exception in USAGE_ERRORS:
        return EXIT_USAGE
    if any(r.status not in ("succeeded", "skipped") for r in ran) or not followed:
        return EXIT_FAILED
    return EXIT_OK


def load_schedule_or_exit(checked: bool = False) -> Schedule:
    """The schedule file, read, or exit 2 saying why; `checked`: also every job's options as
    `workbench run` reads them (a job it would refuse exits 2 under cron before making a record:
    no history, no alert)."""
    from pipeline_lib.runs.notebooks import analyses
    from pipeline_lib.runs.schedule import ScheduleError, load_schedule

    settings = get_settings()
    try:
        schedule = load_schedule(settings.schedule_file, analyses(settings))
    except ScheduleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    for note in schedule.ignored:
        typer.echo(f"warning: {note}", err=True)
    refusals = schedule_refusals(schedule, settings) if checked else []
    for refusal in refusals:
        typer.echo(f"error: {refusal}", err=True)
    if refusals:
        raise typer.Exit(EXIT_USAGE)
    return schedule


def schedule_refusals(schedule: Schedule, settings: Settings) -> list[str]:
    """A sentence for each job of `schedule` that `workbench run` would refuse (`workbench up`,
    the scheduler and `schedule install` refuse such a schedule)."""
    found = []
    for job in sorted([*schedule.jobs, *schedule.followers], key=lambda job: job.line):
        if (reason := _refusal(job, settings)) is not None:
            where = f"{settings.schedule_file}, line {job.line}"
            found.append(f"{where}: `workbench run {job.command}` would refuse it: {reason}")
    return found


def _refusal(job: Job, settings: Settings) -> str | None:
    """Why `workbench run` would refuse the job's options at once (an unknown option, notebook or
    parameter, a value of the wrong type or out of range), or None. Read by the run command's own
    parser, so it says exactly what cron's run would. For an `after` line, also a notebook it
    follows that does not exist."""
    from pipeline_lib.runs.notebooks import UnknownNotebook, notebook_path
    from pipeline_lib.runs.parameters import ParameterError

    command = typer.main.get_command(_run_only)
    try:
        if job.after:
            notebook_path(settings, job.after)
        with command.make_context("workbench run", list(job.args)) as ctx:
            _checked(settings, ctx.params["notebook"], _parameters(ctx.args))
    except typer.TyperException as exc:  # what the command's parser refuses (typer's own click)
        return exc.format_message()
    except (UnknownNotebook, ParameterError) as exc:
        return str(exc)
    except Exception:  # a notebook that does not read (half saved): its run fails and says why
        return None
    return None


@schedule_app.command("show")
def schedule_show(count: Annotated[int, typer.Option(help="fire times to list per job")] = 3) -> None:
    """Print each scheduled job and its next fire times (machine's local time); a job that
    `workbench run` would refuse (e.g. `-p seed abc`) is flagged, and the exit code is then 2."""
    from pipeline_lib.runs.notebooks import analyses
    from pipeline_lib.runs.schedule import runs_of

    schedule = load_schedule_or_exit()
    settings = get_settings()
    now = dt.datetime.now().astimezone()
    typer.echo(f"{settings.schedule_file} ({now:%Z}):")
    problems: dict[int, str | None] = {}  # by line: a follower may show under several jobs
    for job in schedule.jobs:
        times = ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in job.next_times(now, count))
        typer.echo(f"  line {job.line}: {job.cron:<15} workbench run {job.command:<20} next: {times}")
        _show_problem(job, settings, problems, "    ")
        # Its followers under it, each one deeper than the job it follows, once however many of
        # its lines the chain reaches (it runs once, after all of them).
        for step in schedule.steps(runs_of(job, analyses(settings))):
            follower, indent = step.job, "  " * (step.depth + 1)
            lines = ", ".join(str(line.line) for line in step.lines)
            when = "after " + ", ".join(str(line.after) for line in step.lines)
            typer.echo(f"{indent}line {lines}: {when:<15} workbench run {follower.command}")
            for line in step.lines:
                _show_problem(line, settings, problems, indent + "  ", echo=line is follower)
    for follower in schedule.followers:  # checked even where no job it follows shows it
        if follower.line not in problems:
            typer.echo(f"  line {follower.line}: {follower.when:<15} workbench run {follower.command}")
            _show_problem(follower, settings, problems, "    ")
    refused = sum(1 for problem in problems.values() if problem)
    if refused:
        typer.echo(
            f"error: `workbench run` would refuse {refused} job(s) of {settings.schedule_file}", err=True
        )
        raise typer.Exit(EXIT_USAGE)


def _show_problem(
    job: Job, settings: Settings, problems: dict[int, str | None], indent: str, echo: bool = True
) -> None:
    if job.line not in problems:
        problems[job.line] = _refusal(job, settings)
    if problems[job.line] and echo:
        typer.echo(f"{indent}error: {problems[job.line]}")


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

    schedule = load_schedule_or_exit(checked=True)
    jobs, followers = schedule.jobs, schedule.followers
    settings = get_settings()
    if target not in ("auto", "cron.d", "user"):
        typer.echo("error: --target is cron.d, user or auto", err=True)
        raise typer.Exit(EXIT_USAGE)
    if target == "auto":
        target = "cron.d" if os.geteuid() == 0 and cron_install.CRON_D.is_dir() else "user"
    if print_only:
        user = "root" if target == "cron.d" else None
        typer.echo(cron_install.table(jobs, settings, user=user, followers=followers), nl=False)
        return
    try:
        if target == "cron.d":
            where = str(cron_install.install_cron_d(jobs, settings, name, followers))
        else:
            where = cron_install.install_user_crontab(jobs, settings, followers)
    except subprocess.CalledProcessError as exc:  # crontab refused the table: say what it said
        said = (exc.stderr or exc.stdout or "").strip()
        typer.echo(f"error: could not install the schedule: crontab refused it: {said}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except (OSError, ValueError) as exc:
        typer.echo(f"error: could not install the schedule: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    chained = f" (and {len(followers)} `after` line(s), run by the jobs they follow)" if followers else ""
    typer.echo(
        f"Installed {len(jobs)} job(s){chained} into {where}; "
        f"logs go to {settings.data_dir.resolve() / 'logs'}."
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
    jobs = load_schedule_or_exit(checked=True).jobs
    settings = get_settings()

    def note(text: str) -> None:  # the scheduler's own log; failed runs go to standard output
        typer.echo(text, err=True)

    note(f"scheduler: {len(jobs)} job(s) from {settings.schedule_file}")
    serve(settings, echo=typer.echo, note=note, check=lambda schedule: schedule_refusals(schedule, settings))
