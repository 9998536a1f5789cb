"""All settings, from `WORKBENCH_*` environment variables or a `.env` file.

The defaults run everything on one machine with nothing to install: data under the checkout's
`var/`, the db-api on loopback with the embedded store.

Paths mean one thing: every path setting is made absolute here, when settings load (a relative
value against the directory the command was started in), and `child_environment` hands the
resolved values to every child process, papermill kernel and Spark driver, whose own working
directories differ.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import urllib.parse
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The source checkout (or site-packages parent when installed): home of notebooks/ and schedules/.
PROJECT_DIR = Path(__file__).resolve().parent.parent
# The `auto` engine's threshold: pandas up to this many records. On a 2-core machine
# (`tests/bench/bench_engines.py --sizes 300000,1000000 --repeat 1`, 2026-12-07), pandas against
# Spark local[2]: the clean 7.4 s against 11.4 s at 300,000 records, and at 1,000,000 26.3 s
# against 25.8 s (Spark 2% faster, one run each; peak 3.1 GB against 2.6 GB of all processes);
# the process 15.8 s against 29.7 s, and 49.8 s against 69.8 s (peak 1.7 GB against 4.7 GB). The
# clean's crossover is about here, the process's above it, so one threshold serves both. Above it
# the pandas run's memory keeps growing with the input (2.5 GB in its process to clean 1,000,000
# raw records), Spark's is bounded by its batches: lower it on a machine with little memory.
PANDAS_MAX_RECORDS = 1_000_000
# Where the live Voilà dashboards live, on Voilà (loopback) and, proxied for analysts, on the web app.
LIVE_DASHBOARDS_PATH = "/dashboards/live"
LOOPBACK = "127.0.0.1"
WILDCARDS = ("", "0.0.0.0", "::")  # bind every interface: a local client reaches them on LOOPBACK


def reachable(host: str) -> str:
    """The address a local client uses for a server bound to `host`."""
    return LOOPBACK if host in WILDCARDS else host


def db_api_replicas(address: str) -> list[str]:
    """The `host:port`s of WORKBENCH_DB_API_ADDRESS: one, or several separated by commas (replicas
    of a db-api over one MongoDB, which clients spread their calls over). Several must all be IPv4
    or all IPv6 addresses (`[::1]:50051`), as gRPC takes lists of addresses only; for replicas
    known by name, give one DNS name that resolves to all of them."""
    replicas = [part.strip() for part in address.split(",")]
    for replica in replicas:
        host, colon, port = replica.rpartition(":")
        if not (host and colon and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{replica!r} is not host:port")
    families = {ip_family(replica) for replica in replicas}
    if len(replicas) > 1 and (len(families) != 1 or None in families):
        raise ValueError(
            "several db-api addresses must all be IPv4 or all IPv6 addresses "
            "(for replicas known by name, give one DNS name that resolves to all of them)"
        )
    return replicas


def ip_family(replica: str) -> str | None:
    """ "ipv4" or "ipv6" for an IP `host:port`, None for a name."""
    import ipaddress

    host = replica.rpartition(":")[0].removeprefix("[").removesuffix("]")
    try:
        return f"ipv{ipaddress.ip_address(host).version}"
    except ValueError:
        return None


MAX_KEEP_DAYS = 100 * 366  # WORKBENCH_RUN_KEEP_DAYS and `prune-runs --keep-days`: a century


class Settings(BaseSettings):
    # The checkout's `.env`, then one in the folder the command starts in (cron starts runs in
    # the checkout, so secrets kept out of cron lines live there).
    model_config = SettingsConfigDict(
        env_prefix="WORKBENCH_", env_file=(PROJECT_DIR / ".env", ".env"), extra="ignore"
    )

    data_dir: Path = Field(PROJECT_DIR / "var", description="where the embedded store, secrets and runs live")
    db_api_address: str = Field(
        "127.0.0.1:50051",
        description="host:port of the db-api; several IP host:ports separated by commas (replicas "
        "over one MongoDB) spread the calls over them, as does a name that resolves to several",
    )
    db_api_token: SecretStr | None = Field(
        None, description="shared secret for the db-api; generated into data_dir on first start if unset"
    )
    mongo_uri: str | None = Field(None, description="use MongoDB instead of the embedded store")
    db_api_max_message_mb: int = Field(64, ge=1, le=1024, description="largest gRPC message accepted")
    db_api_scan_workers: int = Field(
        default_factory=lambda: min(4, os.cpu_count() or 1),
        ge=0,
        le=64,
        description="processes that turn stored BSON into Arrow for scans; 0 runs it in the db-api",
    )
    spark_master: str = Field(
        "local[*]", description="Spark master: local[N], spark://, yarn, k8s:// or Spark Connect sc://"
    )
    spark_driver_memory: str | None = Field(
        None,
        pattern=r"^[1-9][0-9]*[mgMG]$",
        description="heap of the Spark driver JVM (on local[N] all of Spark's), e.g. 4g; default a "
        "quarter of this machine's memory, between 1g and 8g",
    )
    spark_class_archive: bool = Field(
        True,
        description="driver JVMs that get_spark or the warm Spark start map Spark's classes from a "
        "class-data archive (160 MB under data_dir/spark/class-archive), which the first to find "
        "none builds in the background: a cold Spark starts about 3 s sooner",
    )
    warm_spark: bool = Field(
        False,
        description="`workbench up` keeps a Spark Connect server on spark_master, on loopback, that "
        "runs needing Spark attach to instead of starting a JVM each",
    )
    warm_kernels: int = Field(
        3,
        ge=0,
        le=8,
        description="kernels `workbench up` keeps started with the notebooks' imports done, each "
        "taken by one run instead of a kernel it would start (about 280 MB each); 0: runs start their own",
    )
    spark_connect_port: int = Field(
        15002, ge=1, le=65535, description="loopback port of the warm Spark's Connect server"
    )
    pandas_max_records: int = Field(
        PANDAS_MAX_RECORDS,
        ge=0,
        description="engine auto: pandas in the run's process up to this many records (and, for the "
        "process, up to its max_model_rows), Spark above",
    )
    k_min_group: int = Field(5, ge=1, description="smallest group of students any public view shows")
    k_quantiles: int | None = Field(
        None,
        ge=1,
        description="smallest group whose quartiles (and any percentile) public views show; "
        "default twice k_min_group, never below it",
    )
    protection_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="the audit fails a hidden figure that published results pin within this share "
        "of its value (a count: of the range 1..k-1 its reason allows); see docs/privacy.md",
    )
    web_host: str = Field("127.0.0.1", description="interface the web app listens on")
    web_port: int = Field(8000, description="port of the web app")
    web_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="processes `workbench web` serves with; above 1 they share their counts through "
        "limits_uri (or mongo_uri), so memory alone is refused",
    )
    limits_uri: str | None = Field(
        None,
        description="where the web app keeps rate limits, sign-in back-off, sign-outs and live "
        "kernels' owners: a storage "
        "URI of the `limits` package (`mongodb://...`, `memory://`; others need their client library); "
        "default the MongoDB of mongo_uri, else memory (one process)",
    )
    voila_host: str = Field("127.0.0.1", description="where Voilà serves the dashboards")
    voila_port: int = Field(8866, description="port of the Voilà dashboards")
    voila_pool_size: int = Field(1, ge=0, le=16, description="preheated kernels per dashboard")
    voila_max_kernels: int = Field(
        4,
        ge=0,
        le=256,
        description="live dashboards analysts may have open at once through the web app (each holds "
        "a kernel of 150-300 MB); past it a viewer gets the snapshot. 0: snapshots only",
    )
    voila_kernels_per_account: int = Field(
        2,
        ge=1,
        le=256,
        description="live dashboards one analyst's account may have open at once (of "
        "voila_max_kernels), so no one account holds them all; past it that analyst gets the snapshot",
    )
    voila_idle_seconds: int = Field(
        600, ge=5, le=7 * 24 * 3600, description="a live dashboard's kernel idle this long is shut down"
    )
    voila_connect_seconds: int = Field(
        60,
        ge=1,
        le=3600,
        description="a live page that has not opened its kernel's socket this long after it was sent "
        "(the viewer left, or its script never ran) has its kernel shut down and its place freed",
    )
    jwt_secret: SecretStr | None = Field(
        None, description="JWT signing key; generated into data_dir if unset"
    )
    access_token_minutes: int = Field(30, ge=1, le=24 * 60, description="lifetime of a sign-in (JWT)")
    form_rate_limit: str = Field(
        "20/minute", description="form posts allowed per client address (IPv6: per /64)"
    )
    max_form_bytes: int = Field(64 * 1024, description="largest form post accepted")
    max_json_bytes: int = Field(256 * 1024, description="largest JSON request body accepted")
    max_upload_bytes: int = Field(512 * 1024 * 1024, description="largest bulk upload accepted")
    max_bulk_uploads: int = Field(
        8, ge=1, le=1024, description="bulk uploads in progress at once (429 beyond)"
    )
    max_bulk_uploads_per_user: int = Field(
        2, ge=1, le=1024, description="bulk uploads one account may have in progress at once (429 beyond)"
    )
    upload_idle_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="a request body that sends nothing for this long is cut off, as is a connection "
        "whose request head has not all arrived in this long",
    )
    upload_max_seconds: float = Field(
        7200.0,
        gt=0,
        le=7 * 24 * 3600,
        description="a request body still arriving after this long (time spent waiting for the client) "
        "is cut off",
    )
    trusted_proxies: str = Field(
        "",
        description="comma-separated addresses or networks of reverse proxies whose X-Forwarded-For "
        "is believed; none by default, so the client address is the connection's",
    )
    public_url: str | None = Field(
        None,
        description="the URL people reach the web app at (behind a proxy): failed-run alerts link "
        "there; https makes cookies Secure",
    )
    db_api_max_streams: int = Field(
        16,
        ge=1,
        le=1024,
        description="streaming calls (scans, bulk writes) the db-api serves at once; unary calls "
        "keep capacity of their own however many streams are open",
    )
    db_api_tls_cert: Path | None = Field(
        None, description="PEM certificate of the db-api (with db_api_tls_key): serve over TLS"
    )
    db_api_tls_key: Path | None = Field(None, description="PEM private key of the db-api certificate")
    db_api_tls_client_ca: Path | None = Field(
        None, description="PEM CA bundle: the db-api then requires client certificates signed by it"
    )
    db_api_tls_ca: Path | None = Field(
        None, description="PEM CA bundle clients trust for the db-api's certificate (TLS when set)"
    )
    db_api_tls_client_cert: Path | None = Field(
        None, description="PEM client certificate (with db_api_tls_client_key) for a db-api that asks"
    )
    db_api_tls_client_key: Path | None = Field(None, description="PEM private key of the client certificate")
    notebooks_dir: Path = Field(
        PROJECT_DIR / "notebooks", description="the notebooks `workbench run NAME` executes"
    )
    runs_dir: Path | None = Field(None, description="archive of executed notebooks; default data_dir/runs")
    run_keep_days: int = Field(
        90,
        ge=0,
        le=MAX_KEEP_DAYS,
        description="run records and archived notebooks of runs older than this many days are deleted "
        "(the scheduler, once a day; `workbench prune-runs` by hand), except each notebook's newest run "
        "and newest successful one; 0 keeps every run",
    )
    run_cell_timeout_seconds: int = Field(
        3600, ge=1, description="a run fails as timed_out when one cell runs longer than this"
    )
    run_lease_seconds: float = Field(
        120.0, gt=0, le=86_400, description="how long a dead run blocks the next; renewed while running"
    )
    schedule_file: Path = Field(PROJECT_DIR / "schedules" / "crontab", description="the schedule")
    dashboard_snapshots: bool = Field(
        True,
        description="after each `workbench run`, render every dashboard to the static snapshot the web "
        "app serves under /dashboards/<name> (off: the snapshots keep their last rendering)",
    )
    stale_after: dt.timedelta | None = Field(
        None,
        description="figures older than this are flagged stale (seconds or ISO 8601, e.g. PT3H); "
        "default: two periods of the schedule of the notebook that made them",
    )
    alert_webhook: str | None = Field(
        None,
        description="URL that gets a JSON POST with the run record when a scheduled run fails "
        "(keep it in the checkout's .env: cron lines leave it out)",
    )
    alert_smtp_host: str | None = Field(None, description="SMTP server for failed-run e-mails")
    alert_smtp_port: int = Field(25, ge=1, le=65535, description="port of the SMTP server")
    alert_smtp_user: str | None = Field(None, description="SMTP user name, if the server wants a login")
    alert_smtp_password: SecretStr | None = Field(
        None, description="SMTP password (keep it in the checkout's .env)"
    )
    alert_smtp_starttls: bool = Field(False, description="upgrade the SMTP connection with STARTTLS")
    alert_smtp_from: str = Field("workbench@localhost", description="sender of failed-run e-mails")
    alert_smtp_to: str | None = Field(None, description="comma-separated recipients of failed-run e-mails")

    @field_validator("db_api_address", mode="after")
    @classmethod
    def _replicas(cls, value: str) -> str:
        return ",".join(db_api_replicas(value))

    @field_validator("db_api_token", "jwt_secret", mode="after")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty secret would turn authentication off or sign with nothing: say so instead.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is set but empty; unset it to use the secret generated into the data dir")
        return value

    @model_validator(mode="after")
    def _quantiles_not_below_k(self) -> Settings:
        # Quantiles of a group that may not even be shown would leak what suppression hides.
        if self.k_quantiles is not None and self.k_quantiles < self.k_min_group:
            raise ValueError(
                f"k_quantiles ({self.k_quantiles}) must be at least k_min_group ({self.k_min_group})"
            )
        return self

    @field_validator("stale_after", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        # From the environment a number of seconds is text, which pydantic reads only as ISO 8601.
        if isinstance(value, str):
            try:
                return dt.timedelta(seconds=float(value))
            except ValueError:
                return value
        return value

    @field_validator(
        "data_dir",
        "notebooks_dir",
        "runs_dir",
        "schedule_file",
        "db_api_tls_cert",
        "db_api_tls_key",
        "db_api_tls_client_ca",
        "db_api_tls_ca",
        "db_api_tls_client_cert",
        "db_api_tls_client_key",
        mode="after",
    )
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        # Resolved once, against the directory the command started in; children get the result.
        return None if path is None else Path(os.path.abspath(path.expanduser()))

    @property
    def token_file(self) -> Path:
        return self.data_dir / "secrets" / "db_api_token"

    @property
    def spark_connect_url(self) -> str:
        """The warm Spark's address for clients. `localhost`, not an IP: only then does PySpark send
        the server's token over a plaintext loopback connection (gRPC local credentials)."""
        return f"sc://localhost:{self.spark_connect_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"

    @property
    def voila_url(self) -> str:
        """Voilà's own address (loopback): the web app proxies analysts to it under the same path."""
        return f"http://{self.voila_host}:{self.voila_port}{LIVE_DASHBOARDS_PATH}"

    @property
    def voila_cull_interval(self) -> int:
        """Seconds between Voilà's looks for kernels idle `voila_idle_seconds`: a kernel lives up to
        the sum of the two after its last activity."""
        return max(1, min(60, self.voila_idle_seconds // 4))

    @property
    def quantile_min_group(self) -> int:
        """k_quantiles, or its default: twice k_min_group."""
        return self.k_quantiles if self.k_quantiles is not None else 2 * self.k_min_group

    @property
    def run_archive(self) -> Path:
        return self.runs_dir or self.data_dir / "runs"


@lru_cache
def get_settings() -> Settings:
    return Settings()


# Path settings, always handed down resolved (a child's working directory is not ours).
PATH_SETTINGS = ("data_dir", "notebooks_dir", "runs_dir", "schedule_file")


def child_environment(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process (service, run, kernel, Spark driver): ours, with every
    path setting as the absolute path it resolved to and every setting given to us (also those
    from a `.env` file, which a child started elsewhere would not find) spelled out."""
    env = dict(os.environ if environ is None else environ)
    for name in settings.model_fields_set | set(PATH_SETTINGS):
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, dt.timedelta):
            value = value.total_seconds()
        env[f"WORKBENCH_{name.upper()}"] = str(value)
    return env


class SecretError(ValueError):
    """A secret that is set or stored but unusable (empty, unreadable): never a silent default."""


def db_api_token(settings: Settings, *, create: bool = True) -> str:
    """The db-api token: from the setting, else from `data_dir`, created there on first use (by
    whichever process on this machine asks first: the db-api, the web app or a run)."""
    if settings.db_api_token is not None:
        return settings.db_api_token.get_secret_value()
    token = _secret_file(settings.token_file, create=create)
    if token is None:
        raise SecretError(f"no db-api token: set WORKBENCH_DB_API_TOKEN or create {settings.token_file}")
    return token


def spark_connect_token(settings: Settings) -> str:
    """The warm Spark's token (its Connect server runs any code a client sends): a file in `data_dir`."""
    return _generated_secret(settings, "spark_connect_token")


def jwt_secret(settings: Settings) -> str:
    """The key that signs the web app's access tokens: the setting, else a file in `data_dir`."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    return _generated_secret(settings, "jwt_secret")


def _generated_secret(settings: Settings, name: str) -> str:
    """`<data dir>/secrets/<name>`, generated on first use."""
    secret = _secret_file(settings.data_dir / "secrets" / name, create=True)
    assert secret is not None  # create=True always gives one
    return secret


def _read_secret(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"cannot read the secret file {path}: {exc}") from None
    if not text:
        raise SecretError(
            f"the secret file {path} is empty; delete it to have a new secret generated "
            "(every service and client on this machine then uses the new one)"
        )
    return text


def _secret_file(path: Path, *, create: bool) -> str | None:
    """Read a generated secret, creating it owner-only on first use if `create`.

    The secret is written to a private temporary file and then linked into place, so the file
    appears whole or not at all: a process starting at the same moment never reads it empty."""
    if path.exists():
        return _read_secret(path)
    if not create:
        return None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # owner-only from the start
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(staging, path)
        except FileExistsError:  # another process created it first: use theirs
            return _read_secret(path)
    finally:
        staging.unlink(missing_ok=True)
    return token


_URI_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)


def redact_uri_password(text: str, uri: str) -> str:
    """`text` without the password of `uri` (a database URI; drivers' errors may quote it or its
    parts, percent-decoded or not) nor of any URI in `text`."""
    match = _URI_PASSWORD.search(uri)
    if match and match.group(2):
        text = text.replace(match.group(2), "***")
        text = text.replace(urllib.parse.unquote(match.group(2)), "***")
    return _URI_PASSWORD.sub(r"\1***\3", text)
