"""`workbench demo`: fill a running system with a realistic synthetic population.

Generates schools and students (`pipeline_lib.demo`), imports the schools and uploads the
students through the web app's REST API, as any other client would, and prints a summary.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from contextlib import ExitStack
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline_lib.cli.addresses import reachable
from pipeline_lib.settings import Settings, get_settings

if TYPE_CHECKING:  # pandas and the generator load only when the command runs: `--help` stays quick
    import pandas as pd

    from pipeline_lib.demo.submit import UploadTotals, WorkbenchApi


def default_url(settings: Settings) -> str:
    return f"http://{reachable(settings.web_host)}:{settings.web_port}"


def _password(user: str, password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt(f"Password for {user}", hide_input=True)


def _upload(api: WorkbenchApi, rows: pd.DataFrame, chunk_rows: int) -> UploadTotals:
    """Uploads with a progress bar on a terminal, otherwise a line per chunk (reads well in a log)."""
    from tqdm import tqdm

    sent = 0
    with tqdm(total=len(rows), unit="rec", desc="students", disable=not sys.stderr.isatty()) as bar:

        def on_chunk(count: int) -> None:
            nonlocal sent
            sent += count
            bar.update(count)
            if bar.disable:
                typer.echo(f"submitted {sent:,}/{len(rows):,} records", err=True)

        return api.submit_rows(rows, chunk_rows=chunk_rows, on_chunk=on_chunk)


def _summary(
    url: str, seed: int, schools: dict, students: int, rows: pd.DataFrame, totals: UploadTotals
) -> str:
    dirty = rows["dirt"].dropna()
    kinds = ", ".join(f"{kind} {n}" for kind, n in Counter(dirty).most_common())
    return "\n".join(
        [
            f"Demo data sent to {url} (seed {seed}):",
            f"  schools:  {schools['stored']} created, {schools['replaced']} already there (updated)",
            f"  students: {students:,} in {len(rows):,} records: {totals.stored:,} stored, "
            f"{totals.already_stored:,} already stored, {totals.refused:,} refused",
            f"  dirty:    {len(dirty):,} records ({len(dirty) / max(1, len(rows)):.1%})"
            + (f": {kinds}" if kinds else ""),
        ]
    )


def demo(
    students: Annotated[int, typer.Option(min=1, help="how many students to generate")] = 20_000,
    schools: Annotated[int, typer.Option(min=1, max=10_000, help="how many schools they attend")] = 120,
    dirty: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of records with a typing mistake (0 to 1)")
    ] = 0.1,
    seed: Annotated[
        int, typer.Option(help="the same seed gives the same data; a rerun stores nothing twice")
    ] = 1,
    url: Annotated[
        str | None, typer.Option(help="the web app (default http://WORKBENCH_WEB_HOST:WORKBENCH_WEB_PORT)")
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            help="sign in as this admin account instead of the built-in `demo` one (e.g. a remote server)"
        ),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option(help="with --user: read the password from standard input")
    ] = False,
    chunk_rows: Annotated[int, typer.Option(min=1, help="records per upload request")] = 2000,
) -> None:
    """Generate a realistic synthetic population and submit it through the REST API.

    Imports the schools, then uploads students nested in them (school effects, SES related to scores).

    Without --user, a `demo` account (admin, submit) gets a random password for the run, then is disabled.
    """
    from pipeline_lib.demo.account import DEMO_SCOPES, DEMO_USER, demo_account
    from pipeline_lib.demo.rows import demo_rows
    from pipeline_lib.demo.submit import DemoSubmitError, WorkbenchApi
    from pipeline_lib.wire.requests import DbApiCallError

    started = time.perf_counter()
    settings = get_settings()
    url = (url or default_url(settings)).rstrip("/")
    population, rows = demo_rows(students, schools, dirty, seed)
    try:
        with WorkbenchApi(url) as api, ExitStack() as account:
            api.check()
            if user is None:
                api.login(DEMO_USER, account.enter_context(demo_account(settings)), DEMO_SCOPES)
            else:
                api.login(user, _password(user, password_stdin), DEMO_SCOPES)
            school_report = api.import_schools(population.schools)
            totals = _upload(api, rows, chunk_rows)
    except DemoSubmitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except DbApiCallError as exc:
        typer.echo(
            f"error: cannot set up the {DEMO_USER!r} account through the {exc}. Run the demo on the "
            "machine that runs the workbench, or sign in with --user.",
            err=True,
        )
        raise typer.Exit(1) from None

    typer.echo(_summary(url, seed, school_report, students, rows, totals))
    for problem in totals.problems:
        typer.echo(f"  refused: {problem}")
    typer.echo(f"  elapsed:  {time.perf_counter() - started:.1f} s")
    typer.echo(f"Next: `workbench run all`, then open {url}/results")
