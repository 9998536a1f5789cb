"""The `workbench` command line: one entry point for every part of the system."""

from __future__ import annotations

import logging
import time
from typing import Annotated

import typer

from pipeline_lib.logs import configure_logging
from pipeline_lib.settings import get_settings

app = typer.Typer(
    help="Student Data Workbench: a notebook-centric pipeline for student data.", no_args_is_help=True
)
db_api_app = typer.Typer(help="The db-api: the gRPC data service every other part uses.")
app.add_typer(db_api_app, name="db-api")

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
        )
    except PortInUse as exc:
        store.close()
        typer.echo(f"error: {exc}. Stop the other process or choose another --port.", err=True)
        raise typer.Exit(1) from None
    backend = "mongodb" if settings.mongo_uri else f"embedded sqlite under {settings.data_dir.resolve()}"
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
    from pipeline_lib.db_client import DbApiCallError, DbApiClient

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
