"""The `workbench` command line: one entry point for every part of the system."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from pipeline_lib.cli import runs as cli_runs
from pipeline_lib.cli.dashboards import dashboards
from pipeline_lib.cli.demo import demo
from pipeline_lib.logs import configure_logging
from pipeline_lib.settings import Settings, child_environment, get_settings

app = typer.Typer(
    help="Student Data Workbench: a notebook-centric pipeline for student data.", no_args_is_help=True
)
db_api_app = typer.Typer(help="The db-api: the gRPC data service every other part uses.")
app.add_typer(db_api_app, name="db-api")
users_app = typer.Typer(help="Web app accounts and their scopes.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(cli_runs.schedule_app, name="schedule")
app.command("run", context_settings=cli_runs.RUN_SETTINGS)(cli_runs.run)
app.command("scheduler")(cli_runs.scheduler)
app.command("lab")(cli_runs.lab)
app.command("demo")(demo)
app.command("dashboards")(dashboards)

log = logging.getLogger("workbench")


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@db_api_app.callback(invoke_without_command=True)
def db_api(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="interface to bind (default from WORKBENCH_DB_API_ADDRESS)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="port to listen on (default from WORKBENCH_DB_API_ADDRESS)")
    ] = None,
) -> None:
    """Serve the db-api (embedded store, or MongoDB when WORKBENCH_MONGO_URI is set) until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    from db_api.server import PortInUse, serve_forever, start_server
    from db_api.store import open_store
    from pipeline_lib.settings import db_api_token
    from pipeline_lib.wire.tls import TlsConfigError

    configure_logging()
    settings = get_settings()
    default_host, default_port = _split_address(settings.db_api_address)
    address = f"{host or default_host}:{port if port is not None else default_port}"
    store = open_store(settings.data_dir, settings.mongo_uri)
    try:
        running = start_server(
            store,
            address,
            token=db_api_token(settings, create=True),
            max_message_bytes=settings.db_api_max_message_mb * 1024 * 1024,
            scan_workers=settings.db_api_scan_workers,
            max_streams=settings.db_api_max_streams,
            tls_cert=settings.db_api_tls_cert,
            tls_key=settings.db_api_tls_key,
            tls_client_ca=settings.db_api_tls_client_ca,
        )
    except PortInUse as exc:
        store.close()
        typer.echo(f"error: {exc}. Stop the other process or choose another --port.", err=True)
        raise typer.Exit(1) from None
    except TlsConfigError as exc:
        store.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    backend = "mongodb" if settings.mongo_uri else f"embedded sqlite under {settings.data_dir}"
    log.info("db-api listening", extra={"address": address, "port": running.port, "store": backend})
    serve_forever(running)


@db_api_app.command()
def ping(
    address: Annotated[
        str | None, typer.Option(help="host:port (default from WORKBENCH_DB_API_ADDRESS)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for an answer")] = 5.0,
) -> None:
    """Check that the db-api answers, accepts our token and reaches its store."""
    from pipeline_lib.client.sync import DbApiCallError, DbApiClient

    settings = get_settings()
    if address:
        settings = settings.model_copy(update={"db_api_address": address})
    started = time.perf_counter()
    with DbApiClient.from_settings(settings, timeout=timeout) as client:
        try:
            status = client.health()
            runs = client.count("runs")
        except DbApiCallError as exc:
            typer.echo(f"db-api not ready: {exc}", err=True)
            raise typer.Exit(1) from None
    elapsed_ms = (time.perf_counter() - started) * 1000
    typer.echo(
        f"db-api at {settings.db_api_address}: {status}, store reachable ({runs} runs), {elapsed_ms:.0f} ms"
    )


@app.command()
def web(
    host: Annotated[str | None, typer.Option(help="interface to bind (default WORKBENCH_WEB_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default WORKBENCH_WEB_PORT)")] = None,
) -> None:
    """Serve the web app (form, API, results) with uvicorn until Ctrl-C."""
    import uvicorn

    from pipeline_lib.cli.supervisor import PortTaken, check_port_free

    configure_logging()
    settings = get_settings()
    host, port = host or settings.web_host, port if port is not None else settings.web_port
    try:
        check_port_free(host, port, "the web app")
    except PortTaken as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    from web_app.client_address import uvicorn_proxy_options

    # X-Forwarded-For only from WORKBENCH_TRUSTED_PROXIES (uvicorn alone would believe 127.0.0.1).
    uvicorn.run(
        "web_app.main:create_app",
        factory=True,
        host=host,
        port=port,
        server_header=False,
        log_config=None,
        **uvicorn_proxy_options(settings.trusted_proxies),
    )


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _workbench_command() -> str:
    """How the user runs `workbench`: the script beside our interpreter, relative to the working
    folder when inside it (`.venv/bin/workbench` in a checkout)."""
    script = Path(sys.executable).parent / "workbench"
    if not script.exists():
        return "workbench"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _next_steps(settings: Settings) -> str:
    """What `up` says once everything is ready: where to go, and what to run next."""
    workbench = _workbench_command()
    return f"""
Open in a browser:
  form        {settings.web_url}/
  results     {settings.web_url}/results
  API docs    {settings.web_url}/docs
  dashboards  {settings.voila_url}/

Next, from another shell: fill it with demo data, run the pipeline once, create your account:
  {workbench} demo --students 20000 --schools 120
  {workbench} run all
  {workbench} users add admin --scope admin
"""


@app.command()
def up() -> None:
    """Start the whole system on this machine (db-api, web app, dashboards, scheduler); Ctrl-C stops it.

    The terminal shows the services' URLs, the next steps and problems; each service's own log
    goes to `<data dir>/logs/<service>.log`."""
    from pipeline_lib.cli.supervisor import PortTaken, Service, run
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.logs import log_dir

    settings = get_settings()
    db_host, db_port = _split_address(settings.db_api_address)

    def db_ready() -> bool:
        with DbApiClient.from_settings(settings, timeout=1) as client:
            try:
                return client.health() == "SERVING"
            except Exception:
                return False

    web_url = f"http://{settings.web_host}:{settings.web_port}"

    def web_ready() -> bool:
        return _answers(f"{web_url}/healthz")

    services = [
        Service("db-api", ["db-api"], db_host, db_port, f"grpc://{settings.db_api_address}", db_ready),
        Service("web", ["web"], settings.web_host, settings.web_port, f"{web_url}/", web_ready),
        Service(
            "voila",
            ["dashboards"],
            settings.voila_host,
            settings.voila_port,
            f"{settings.voila_url}/",
            lambda: _answers(f"{settings.voila_url}/"),
        ),
        Service(
            "scheduler", ["scheduler"], None, None, f"runs the jobs in {settings.schedule_file}", lambda: True
        ),
    ]
    from pipeline_lib.runs.schedule import ScheduleError, load

    try:
        load(settings.schedule_file)  # a broken schedule stops `up` before anything starts
    except ScheduleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        code = run(
            services,
            typer.echo,
            env=child_environment(settings),
            log_dir=log_dir(settings.data_dir),
            when_ready=_next_steps(settings),
            error=lambda text: typer.echo(text, err=True),
        )
    except PortTaken as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="the username")],
    scope: Annotated[list[str], typer.Option(help="submit, results:read, analyst or admin; repeat for more")],
    password_stdin: Annotated[bool, typer.Option(help="read the password from standard input")] = False,
) -> None:
    """Create or update a web app user (the password is asked for, never an argument)."""
    import sys

    from pipeline_lib.client.sync import DbApiCallError, DbApiClient
    from pipeline_lib.contract.users import SCOPES, hash_password

    unknown = sorted(set(scope) - set(SCOPES))
    if unknown:
        typer.echo(f"error: unknown scope(s) {unknown}; choose from {', '.join(SCOPES)}", err=True)
        raise typer.Exit(2)
    if not 1 <= len(name) <= 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        typer.echo("error: a username is 1-64 letters, digits, '-', '_' or '.'", err=True)
        raise typer.Exit(2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        typer.echo("error: use a password of at least 8 characters", err=True)
        raise typer.Exit(2)
    user = {"scopes": sorted(set(scope)), "password_hash": hash_password(password), "disabled": False}
    with DbApiClient.from_settings() as client:
        try:
            created = client.put_document("users", name, user)
        except DbApiCallError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(
        f"{'Created' if created else 'Updated'} user {name!r} with scopes {', '.join(user['scopes'])}."
    )


@users_app.command("list")
def users_list() -> None:
    """List the web app users and their scopes."""
    from pipeline_lib.client.sync import DbApiClient

    with DbApiClient.from_settings() as client:
        for user in client.list_documents("users", limit=10_000):
            state = " (disabled)" if user.get("disabled") else ""
            typer.echo(f"{user['_id']}: {', '.join(user.get('scopes', []))}{state}")


def main() -> None:
    from pydantic import ValidationError

    from pipeline_lib.settings import SecretError
    from pipeline_lib.wire.tls import TlsConfigError

    try:
        app()
    except (ValidationError, SecretError, TlsConfigError) as exc:  # settings a person must fix: no traceback
        if isinstance(exc, ValidationError) and exc.title != "Settings":
            raise
        lines = str(exc).splitlines()
        if isinstance(exc, ValidationError):  # one line per setting, named as the user sets it
            lines = [f"WORKBENCH_{e['loc'][0]}".upper() + f": {e['msg']}" for e in exc.errors()]
        typer.echo("error: invalid settings: " + "; ".join(lines), err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
