"""`workbench db-api [ping]`, `workbench web` and `workbench up`: the servers, one at a time or all
together (`up` supervises them as child processes, see `supervisor`)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline_lib.cli.addresses import (
    PortTaken,
    check_port_free,
    db_api_serving,
    http_answers,
    split_address,
)
from pipeline_lib.logs import configure_logging
from pipeline_lib.settings import Settings, child_environment, db_api_replicas, get_settings, jwt_secret

if TYPE_CHECKING:
    from pipeline_lib.cli.supervisor import Service

db_api_app = typer.Typer(help="The db-api: the gRPC data service every other part uses.")

log = logging.getLogger("workbench")

# What `up` suggests once everything is ready: the README's quick start lists the same commands
# (tests/pipeline_lib/cli/test_next_steps.py compares the two).
NEXT_STEPS = ("demo --students 20000 --schools 120", "run all", "users add admin --scope admin")


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
    from db_api.server import PortInUse, serve_forever, start_server, stop_requests
    from db_api.store import open_store
    from pipeline_lib.settings import db_api_token
    from pipeline_lib.wire.tls import TlsConfigError

    configure_logging()
    settings = get_settings()
    replicas = db_api_replicas(settings.db_api_address)
    if len(replicas) > 1 and port is None:
        typer.echo(
            f"error: WORKBENCH_DB_API_ADDRESS names {len(replicas)} db-api replicas; start each "
            "with its --host and --port",
            err=True,
        )
        raise typer.Exit(2)
    default_host, default_port = split_address(replicas[0])
    address = f"{host or default_host}:{port if port is not None else default_port}"
    store = open_store(settings.data_dir, settings.mongo_uri)  # Ctrl-C while it connects: KeyboardInterrupt
    stopping = stop_requests()
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
    serve_forever(running, stopping)


@db_api_app.command()
def ping(
    address: Annotated[
        str | None, typer.Option(help="host:port (default from WORKBENCH_DB_API_ADDRESS)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for an answer")] = 5.0,
) -> None:
    """Check that the db-api answers, accepts our token and reaches its store."""
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.wire.requests import DbApiCallError

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


def web(
    host: Annotated[str | None, typer.Option(help="interface to bind (default WORKBENCH_WEB_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default WORKBENCH_WEB_PORT)")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="processes to serve with (default WORKBENCH_WEB_WORKERS)"),
    ] = None,
) -> None:
    """Serve the web app (form, API, results) with uvicorn until Ctrl-C.

    Several workers share one port and behave as one app: their rate limits, sign-in back-off and
    sign-outs are counted in WORKBENCH_LIMITS_URI (default the MongoDB of WORKBENCH_MONGO_URI), and
    their signing key is the one in the settings or the data dir."""
    import uvicorn

    configure_logging()
    settings = get_settings()
    host, port = host or settings.web_host, port if port is not None else settings.web_port
    workers = workers or settings.web_workers
    problem = web_workers_problem(settings, workers)
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    try:
        check_port_free(host, port, "the web app")
    except PortTaken as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    from web_app.serving import uvicorn_options

    jwt_secret(settings)  # generated once here, not by each worker as it starts
    # asyncio's loop (`web_app.serving`); X-Forwarded-For only from WORKBENCH_TRUSTED_PROXIES
    # (uvicorn alone would believe 127.0.0.1).
    uvicorn.run(
        "web_app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        server_header=False,
        log_config=None,
        **uvicorn_options(settings.trusted_proxies, head_seconds=settings.upload_idle_seconds),
    )


def web_workers_problem(settings: Settings, workers: int) -> str | None:
    """Why the web app cannot serve with `workers` processes on these settings; None if it can."""
    from web_app.ratelimit import is_shared, limit_storage, limits_uri

    try:
        limit_storage(settings)  # a URI the `limits` package cannot use is refused here, not per request
    except ValueError as exc:
        return str(exc)
    if workers > 1 and not is_shared(limits_uri(settings)):
        return (
            f"{workers} workers would each count rate limits, failed sign-ins and sign-outs alone "
            "(a session signed out on one would still work on another). Set WORKBENCH_MONGO_URI or "
            "WORKBENCH_LIMITS_URI so they share them, or serve with one worker."
        )
    return None


def workbench_command() -> str:
    """How the user runs `workbench`: the script beside our interpreter, relative to the working
    folder when inside it (`.venv/bin/workbench` in a checkout)."""
    script = Path(sys.executable).parent / "workbench"
    if not script.exists():
        return "workbench"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def next_steps(settings: Settings, workbench: str) -> str:
    """What `up` says once everything is ready: where to go, and what to run next."""
    commands = "\n".join(f"  {workbench} {step}" for step in NEXT_STEPS)
    return f"""
Open in a browser:
  form        {settings.web_url}/
  results     {settings.web_url}/results
  API docs    {settings.web_url}/docs
  dashboards  {settings.web_url}/dashboards

Next, from another shell: fill it with demo data, run the pipeline once, create your account:
{commands}
"""


def spark_connect() -> None:
    """Run the warm Spark in the foreground: a Spark Connect server on loopback that runs needing
    Spark attach to (`workbench up` starts it when WORKBENCH_WARM_SPARK is true). Once it answers,
    a warm-up in the background runs a sample of the runs' work on it (`spark.warm_up`)."""
    import os

    from pipeline_lib.spark import daemon_zygote, warm_up
    from pipeline_lib.spark.engine import local_cores
    from pipeline_lib.spark.warm import server_command

    settings = get_settings()
    args, env = server_command(settings)
    if local_cores(settings.spark_master) is not None:  # a cluster's executors run their own daemons
        # Each session's Python daemon forks from it, imports done.
        env[daemon_zygote.ENV] = daemon_zygote.new_name()
        daemon_zygote.start(os.getpid(), env)
    warm_up.start(os.getpid())  # once the server answers, its first jobs run before a run's
    os.execve(args[0], args, env)  # the JVM takes this process: a stop signal reaches it


def warm_kernels() -> None:
    """Keep WORKBENCH_WARM_KERNELS kernels started, with the notebooks' imports done, for runs to
    take (`workbench up` starts it); until Ctrl-C or SIGTERM, or the end of `workbench up`."""
    import os
    import signal
    import threading

    from pipeline_lib.dashboards.snapshot import servable
    from pipeline_lib.parent_watch import on_parent_exit
    from pipeline_lib.runs.notebooks import available_notebooks, notebook_path
    from pipeline_lib.runs.warm_kernel_keeper import Keeper

    configure_logging()
    settings = get_settings()
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    on_parent_exit(os.getppid(), stopping.set)  # `workbench up` killed: no kernel outlives it
    notebooks = [notebook_path(settings, name) for name in available_notebooks(settings)]
    Keeper(settings, [*notebooks, *servable(settings)]).serve(stopping)


def up() -> None:
    """Start the whole system on this machine (db-api, web app, dashboards, scheduler); Ctrl-C stops it.

    The terminal shows the services' URLs, the next steps and problems; each service's own log
    goes to `<data dir>/logs/<service>.log`."""
    from pipeline_lib.cli.runs import load_schedule_or_exit
    from pipeline_lib.cli.supervisor import Service, run
    from pipeline_lib.logs import log_dir

    settings = get_settings()
    if len(db_api_replicas(settings.db_api_address)) > 1:
        typer.echo(
            "error: `workbench up` starts one db-api on this machine, and WORKBENCH_DB_API_ADDRESS "
            "names several: start each replica with `workbench db-api --host H --port P`",
            err=True,
        )
        raise typer.Exit(2)
    db_host, db_port = split_address(settings.db_api_address)
    services = [
        Service(
            "db-api",
            ["db-api"],
            db_host,
            db_port,
            f"grpc://{settings.db_api_address}",
            lambda: db_api_serving(settings),
        ),
        *_warm_spark(settings),
        Service(
            "web",
            ["web"],
            settings.web_host,
            settings.web_port,
            f"{settings.web_url}/",
            lambda: http_answers(f"{settings.web_url}/healthz"),
        ),
        Service(
            "voila",
            ["dashboards"],
            settings.voila_host,
            settings.voila_port,
            f"{settings.voila_url}/",
            lambda: http_answers(f"{settings.voila_url}/"),
        ),
        *_warm_kernels(settings),
        Service(
            "scheduler", ["scheduler"], None, None, f"runs the jobs in {settings.schedule_file}", lambda: True
        ),
    ]
    # A broken schedule, or a job `workbench run` would refuse, stops `up` before anything starts.
    load_schedule_or_exit(checked=True)
    try:
        code = run(
            services,
            typer.echo,
            env=child_environment(settings),
            log_dir=log_dir(settings.data_dir),
            when_ready=next_steps(settings, workbench_command()),
            error=lambda text: typer.echo(text, err=True),
        )
    except PortTaken as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def _warm_kernels(settings: Settings) -> list[Service]:
    """The warm kernels' keeper, unless WORKBENCH_WARM_KERNELS is 0."""
    from pipeline_lib.cli.supervisor import Service

    if not settings.warm_kernels:
        return []
    what = f"keeps {settings.warm_kernels} kernel(s) warm for runs"
    return [Service("kernels", ["warm-kernels"], None, None, what, lambda: True)]


def _warm_spark(settings: Settings) -> list[Service]:
    """The warm Spark's service, when WORKBENCH_WARM_SPARK is true."""
    from pipeline_lib.cli.supervisor import Service
    from pipeline_lib.spark.warm import answers

    if not settings.warm_spark:
        return []
    url = f"{settings.spark_connect_url} (Spark Connect on {settings.spark_master})"
    port = settings.spark_connect_port
    return [Service("spark", ["spark-connect"], "127.0.0.1", port, url, lambda: answers(settings))]
