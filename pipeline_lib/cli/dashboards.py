"""`workbench dashboards`: serve the Voilà dashboards of `notebooks/dashboards/`.

Sources are stripped, so viewers see outputs only; each dashboard keeps `voila_pool_size`
kernels preheated (imports and plotting warmed up, waiting for a viewer), so a page shows its
first plot in about a second. Only the web app's origin may frame the dashboards. The kernels
get the db-api's address and token (and k) in their environment, whatever their working folder,
and are reached over Unix sockets (IPC), not loopback TCP. The shipped dashboards are signed at
start (Jupyter's notary, its secret and database under `<data dir>/jupyter/`), so Voilà trusts
them instead of warning that each is "not trusted".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline_lib.cli.addresses import PortTaken, check_port_free, reachable, split_address
from pipeline_lib.dashboards.catalog import dashboard_notebooks, dashboards_dir
from pipeline_lib.settings import LIVE_DASHBOARDS_PATH, Settings, db_api_replicas, db_api_token, get_settings

if TYPE_CHECKING:
    from traitlets.config import Config

# The project's Voilà template: Voilà's lab template, but asking nothing of other sites.
VOILA_TEMPLATE = "workbench"
JUPYTER_DATA = Path(__file__).resolve().parents[1] / "dashboards" / "jupyter"


def notary_dir(settings: Settings) -> Path:
    """Where the notary that signs the dashboards keeps its secret and signature database."""
    return settings.data_dir / "jupyter"


def content_security_policy(settings: Settings) -> str:
    """Voilà's pages may be framed by the web app's origin only (Voilà's default allows 'self')."""
    return f"frame-ancestors {settings.web_url}"


def kernel_environment(settings: Settings, host: str) -> dict[str, str]:
    """What a dashboard kernel needs to read the results: absolute, as kernels run in the
    notebooks' folder, where relative paths and a `.env` file would not be found."""
    replicas = (split_address(replica) for replica in db_api_replicas(settings.db_api_address))
    env = {
        "WORKBENCH_DB_API_ADDRESS": ",".join(f"{reachable(host)}:{port}" for host, port in replicas),
        "WORKBENCH_DATA_DIR": str(settings.data_dir.resolve()),
        "WORKBENCH_K_MIN_GROUP": str(settings.k_min_group),
        "WORKBENCH_DB_API_MAX_MESSAGE_MB": str(settings.db_api_max_message_mb),
        # Where a preheated kernel asks Voilà for the viewer's request (dashboards.viewer_request).
        "VOILA_APP_IP": reachable(host),
    }
    token = db_api_token(settings)
    if token:
        env["WORKBENCH_DB_API_TOKEN"] = token
    return env


def voila_config(settings: Settings, host: str, port: int, pool_size: int) -> dict[str, dict[str, object]]:
    """The traitlets configuration of the Voilà server."""
    from pipeline_lib.runs.kernel import short_temp_root

    return {
        "Voila": {
            "ip": host,
            "port": port,
            "port_retries": 0,  # the configured port or none: the web app links to it
            "open_browser": False,
            "root_dir": str(dashboards_dir(settings)),
            # Served under the path the web app proxies analysts on, so pages need no rewriting.
            "base_url": f"{LIVE_DASHBOARDS_PATH}/",
            "tornado_settings": {"headers": {"Content-Security-Policy": content_security_policy(settings)}},
            # The kernels' sockets live in a private folder made under this one (short: a socket
            # path holds 107 bytes at most).
            "connection_dir_root": short_temp_root(),
        },
        # Kernels run on this machine: Unix sockets, which no other machine can reach, rather
        # than unencrypted loopback TCP (which the kernels warn about).
        "KernelManager": {"transport": "ipc"},
        # The notary Voilà checks the dashboards with, the one `sign_dashboards` signs them with.
        "NotebookNotary": {"data_dir": str(notary_dir(settings))},
        # A viewer's kernel idle for `voila_idle_seconds` is shut down, open page or not (Voilà
        # never culls its preheated pool): live kernels are capped, so an idle one frees its slot.
        "MappingKernelManager": {
            "cull_idle_timeout": settings.voila_idle_seconds,
            "cull_interval": settings.voila_cull_interval,
            "cull_connected": True,
        },
        "VoilaConfiguration": {
            "template": VOILA_TEMPLATE,
            # Not from the page's address: Voilà writes `?theme=` into the page unescaped, and
            # `?template=` would pick any installed template.
            "allow_theme_override": "NO",
            "allow_template_override": "NO",
            "strip_sources": True,
            "show_tracebacks": False,
            "preheat_kernel": pool_size > 0,
            "default_pool_size": pool_size,
        },
    }


def sign_dashboards(settings: Settings, config: Config) -> int:
    """Sign the dashboards with the notary `config` describes, so Voilà trusts them; returns how
    many were not signed yet. They are the project's own notebooks, served from its checkout:
    Voilà executes them afresh for each viewer and shows only the outputs it produced itself."""
    import nbformat
    from nbformat.sign import NotebookNotary

    notary_dir(settings).mkdir(parents=True, exist_ok=True, mode=0o700)
    notary = NotebookNotary(config=config)
    signed = 0
    for path in dashboard_notebooks(settings):
        notebook = nbformat.read(path, as_version=4)
        if not notary.check_signature(notebook):
            notary.sign(notebook)  # the signature goes to the notary's database; the file is unchanged
            signed += 1
    notary.close()
    return signed


def serve(settings: Settings, host: str, port: int, pool_size: int) -> None:
    """Run Voilà in this process until SIGINT or SIGTERM (it then shuts its kernels down)."""
    from traitlets.config import Config
    from voila.app import Voila

    from pipeline_lib.runs.kernel import ensure_kernel

    ensure_kernel()  # the notebooks name the project's kernel
    os.environ.update(kernel_environment(settings, host))  # kernels start with a copy of it
    # Where Voilà finds the project's template (`VOILA_TEMPLATE`), before the installed ones.
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        filter(None, [str(JUPYTER_DATA), os.environ.get("JUPYTER_PATH")])
    )
    config = Config(voila_config(settings, host, port, pool_size))
    sign_dashboards(settings, config)
    app = Voila(config=config)
    app.initialize([str(dashboards_dir(settings))])
    app.start()


def dashboards(
    host: Annotated[str | None, typer.Option(help="interface to bind (default WORKBENCH_VOILA_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default WORKBENCH_VOILA_PORT)")] = None,
    pool_size: Annotated[
        int | None,
        typer.Option(
            min=0, max=16, help="preheated kernels per dashboard (default WORKBENCH_VOILA_POOL_SIZE)"
        ),
    ] = None,
    show_config: Annotated[bool, typer.Option(help="print the Voilà configuration and exit")] = False,
) -> None:
    """Serve the Voilà dashboards (overview, schools, models, data quality) until Ctrl-C."""
    from pipeline_lib.logs import configure_logging

    settings = get_settings()
    host = host if host is not None else settings.voila_host
    port = port if port is not None else settings.voila_port
    pool = pool_size if pool_size is not None else settings.voila_pool_size
    if show_config:
        typer.echo(json.dumps(voila_config(settings, host, port, pool), indent=2))
        return
    if not dashboards_dir(settings).is_dir():
        typer.echo(f"error: no dashboards folder at {dashboards_dir(settings)}", err=True)
        raise typer.Exit(2)
    configure_logging()
    try:
        check_port_free(host, port, "the dashboards")
    except PortTaken as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    serve(settings, host, port, pool)


if __name__ == "__main__":  # `python -m pipeline_lib.cli.dashboards`: the command alone, as tests start it
    typer.run(dashboards)
