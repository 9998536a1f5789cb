"""The `workbench` command line: one entry point for every part of the system.

This module only assembles the app: each command group lives in its own module and is
registered here, in the one list below.
"""

from __future__ import annotations

import typer

from pipeline_lib.cli import (
    dashboards,
    demo,
    lab,
    new,
    prune_runs,
    release,
    runs,
    servers,
    spark_archive,
    users,
)

app = typer.Typer(
    help="Student Data Workbench: a notebook-centric pipeline for student data.", no_args_is_help=True
)
# `workbench --help` lists the commands in this order, then the groups.
app.command("run", context_settings=runs.RUN_SETTINGS)(runs.run)
app.command("scheduler")(runs.scheduler)
app.command("lab")(lab.lab)
app.command("demo")(demo.demo)
app.command("dashboards")(dashboards.dashboards)
app.command("web")(servers.web)
app.command("up")(servers.up)
app.command("spark-connect")(servers.spark_connect)
app.command("warm-kernels")(servers.warm_kernels)
app.command("spark-archive")(spark_archive.spark_archive)
app.command("prune-runs")(prune_runs.prune_runs)
app.add_typer(servers.db_api_app, name="db-api")
app.add_typer(users.users_app, name="users")
app.add_typer(runs.schedule_app, name="schedule")
app.add_typer(release.release_app, name="release")
app.add_typer(new.new_app, name="new")


def main() -> None:
    """Run the app; settings a person must fix are one line of error and exit code 2, no traceback."""
    from pydantic import ValidationError

    from pipeline_lib.settings import SecretError
    from pipeline_lib.wire.tls import TlsConfigError

    try:
        app()
    except (ValidationError, SecretError, TlsConfigError) as exc:
        if isinstance(exc, ValidationError) and exc.title != "Settings":
            raise
        lines = str(exc).splitlines()
        if isinstance(exc, ValidationError):  # one line per setting, named as the user sets it
            lines = [f"WORKBENCH_{e['loc'][0]}".upper() + f": {e['msg']}" for e in exc.errors()]
        typer.echo("error: invalid settings: " + "; ".join(lines), err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
