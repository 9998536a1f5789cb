"""One call for a SparkSession that works on this machine and on a cluster: `get_spark()`.

The master comes from the argument, else `WORKBENCH_SPARK_MASTER` (default `local[*]`):
`local[N]`, `spark://host:port`, `yarn`, `k8s://…`, or Spark Connect `sc://host:port`. The
session has the `workbench` data source registered (`spark.read.format("workbench")`).
With `WORKBENCH_WARM_SPARK`, a session on the settings' master is one on the warm Spark that
`workbench up` keeps (`pipeline_lib.spark.warm`): no JVM starts in the caller's process.

What the driver's JVM prints to its stderr (Java's own notices, Spark's log at WARN and above,
the Python workers' stderr) is appended to `<data dir>/logs/spark.log`, not shown in a notebook
or terminal: it is noise there. Errors still reach the caller as Python exceptions.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from pipeline_lib.logs import log_dir, open_log, tail
from pipeline_lib.settings import Settings, get_settings
from pipeline_lib.spark import daemon_zygote, python_daemon
from pipeline_lib.spark.class_archive import with_archive
from pipeline_lib.spark.engine import local_cores
from pipeline_lib.spark.source import is_connect, register

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

# Warnings and errors only, on stderr (which `get_spark` sends to <data dir>/logs/spark.log);
# Hadoop's "native library" notice is noise here.
_LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error
"""


def driver_on_loopback(master: str) -> bool:
    """True when every process of the session runs on this machine: a local master, or a
    standalone master on a loopback address (tests, a one-machine cluster)."""
    if local_cores(master) is not None:
        return True
    if master.startswith("spark://"):
        hosts = [urlsplit(f"spark://{part}").hostname or "" for part in master[8:].split(",")]
        return all(host in _LOOPBACK_HOSTS for host in hosts)
    return False


def spark_conf(master: str, *, settings: Settings, long_lived: bool = False) -> dict[str, str]:
    """The configuration `get_spark` starts a (non-Connect) session with; `long_lived` for the
    warm Spark's server, whose JVM serves many runs."""
    spark_dir = (settings.data_dir / "spark").resolve()
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",  # progress bars would fill notebook outputs
        "spark.ui.enabled": "false",  # ~1 s less at start; pass conf={"spark.ui.enabled": "true"}
        "spark.sql.warehouse.dir": str(spark_dir / "warehouse"),
        # Plans of wide rows (the clean's) are printed whole in errors and `explain()`, without
        # the "Truncated the string representation of a plan" warning (default 25 fields).
        "spark.sql.debug.maxToStringFields": "1000",
        # PySpark 4 records the Python call site of every column function for error messages
        # (four JVM round trips and a stack walk each); the clean builds thousands of column
        # expressions, and this cost it 3-8 s per run on 3,000 records (warm: 16-19 s -> 10-14 s).
        # Errors still name the failing expression and its plan; pass this as "true" in `conf`
        # to also get the notebook line that built it.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
        # Python workers import pyspark from its installed package, not from pyspark.zip: a
        # session's first Python job 0.4 s instead of 1.1 s (`python_daemon`).
        "spark.python.daemon.module": python_daemon.MODULE,
    }
    # Spark's own default, 1g, is all a local[N] Spark has for its tasks and cached data: 3,000,000
    # students ran out of it (exact quartiles, the model frame's results).
    conf["spark.driver.memory"] = settings.spark_driver_memory or default_driver_memory()
    log_config = _log4j2_file(spark_dir)
    # HotSpot never compiles a method over 8,000 bytes of bytecode; whole-stage code generation
    # writes bigger ones for wide rows (the clean's), which then run interpreted, several times
    # slower. Letting the JIT compile them made the 1M-record clean benchmark ~10% faster.
    jvm_options = f"-Dlog4j2.configurationFile={log_config.as_uri()} -XX:-DontCompileHugeMethods"
    if not long_lived:
        # A run's JVM lives for that run: HotSpot's optimising compiler (C2) cost it about as much
        # CPU as its tasks (a cold 1M-record clean, 2 cores: 57 s of compilation by JFR). With the
        # quick compiler alone, four alternating pairs of that clean took 75.3, 71.4, 90.9, 88.9 s
        # against 87.9, 88.7, 91.7, 97.8 s, with 19-30 s less CPU in Spark each time. The warm
        # Spark compiles once for every run, so it keeps C2.
        # C1 alone also shrinks HotSpot's code cache to 48 MB (240 MB with C2): a session that lives
        # long (an analyst's notebook, the test suite's shared session) filled it with the code of
        # hundreds of generated queries, and its JVM died ("Out of space in CodeCache for
        # adapters"). So it keeps the usual size (reserved address space, used as code is compiled).
        jvm_options += f" -XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize={CODE_CACHE}"
    conf["spark.driver.extraJavaOptions"] = jvm_options
    cores = local_cores(master)
    if cores is not None:
        # A small machine: 200 shuffle partitions (the default) cost more than they bring.
        conf["spark.sql.shuffle.partitions"] = str(2 * cores)
    if driver_on_loopback(master):
        conf["spark.driver.host"] = LOOPBACK
        conf["spark.driver.bindAddress"] = LOOPBACK
        conf["spark.executor.extraJavaOptions"] = jvm_options
    return conf


CODE_CACHE = "240m"  # HotSpot's default code cache with C2, kept by a driver that compiles with C1 only


def default_driver_memory() -> str:
    """A quarter of this machine's memory, between 1g and 8g, in megabytes."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{min(8 << 10, max(1 << 10, total // 4 >> 20))}m"


def get_spark(
    master: str | None = None,
    *,
    app_name: str = "workbench",
    settings: Settings | None = None,
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """A SparkSession (the running one if there is one) with the `workbench` data source.

    A running session is reused (its data source re-registered with `settings`); asking for a
    `master` other than its own is an error, and `conf` may then change runtime settings only.

    `conf` adds or overrides Spark settings, e.g. `{"spark.executor.memory": "1g"}`. On a
    Spark Connect master (`sc://…`) only runtime SQL settings apply; the server owns the rest.
    """
    settings = settings or get_settings()
    asked = master
    master = (master or settings.spark_master).strip()
    if master.startswith("sc://"):
        return _connect_session(master, app_name=app_name, settings=settings, conf=conf)
    running = SparkSession.getActiveSession()
    if running is not None and is_connect(running):  # this process attached to a warm Spark before
        for key, value in (conf or {}).items():
            running.conf.set(key, value)
        register(running, settings)
        return running
    if running is None:
        warm = _warm_session(asked, app_name=app_name, settings=settings, conf=conf)
        if warm is not None:
            return warm
    if running is not None:
        if asked is not None and running.sparkContext.master != master:
            raise RuntimeError(
                f"a SparkSession on {running.sparkContext.master} is already running in this process; "
                f"stop it (spark.stop()) before starting one on {master}"
            )
        for key, value in (conf or {}).items():
            running.conf.set(key, value)  # runtime settings only: Spark refuses the others
        register(running, settings, partitions=running.sparkContext.defaultParallelism)
        return running
    _prepare_environment(master, settings)
    options = {**spark_conf(master, settings=settings), **(conf or {})}
    if SparkContext._gateway is None:  # this process has no driver JVM yet: start it, quietly
        launch = with_archive({**options, "spark.master": master, "spark.app.name": app_name}, settings)
        _launch_driver(launch, settings)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in options.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    _log_query_errors_to_file(spark_log(settings))
    register(spark, settings, partitions=spark.sparkContext.defaultParallelism)
    return spark


def spark_log(settings: Settings) -> Path:
    """Where the driver JVM's stderr goes."""
    return log_dir(settings.data_dir) / "spark.log"


def _launch_driver(options: Mapping[str, str], settings: Settings) -> None:
    """Start the driver JVM as pyspark would (`spark-submit` with `options`), but with its stderr
    appended to `spark_log`: a kernel copies everything on its stderr into the notebook, and the
    JVM writes there at start ("WARNING: Using incubator modules", log4j's warnings) and later."""
    from pyspark.errors import PySparkRuntimeError
    from pyspark.java_gateway import launch_gateway

    path = spark_log(settings)
    heading = f"Spark driver of {options['spark.app.name']!r} (for python pid {os.getpid()})"
    conf = SparkConf().setAll(options.items())
    stream, start = open_log(path, heading)
    with stream:
        if local_cores(options["spark.master"]) is not None:  # a cluster's executors run their own daemons
            daemon_zygote.for_this_driver(os.environ, stream)  # imports while the JVM starts
        try:
            gateway = launch_gateway(conf, popen_kwargs={"stderr": stream})
        except PySparkRuntimeError as exc:
            last = "\n".join(f"  {line}" for line in tail(path, start)) or "  (nothing)"
            raise RuntimeError(f"Spark's driver (a JVM) did not start; {path} ends:\n{last}") from exc
    SparkContext(conf=conf, gateway=gateway)  # the session the builder makes next uses it


def _log_query_errors_to_file(path: Path) -> None:
    """PySpark logs a failed query's error, traceback included, as JSON on stderr (a red block
    under the cell's own traceback, which already says what failed and where): into `path`."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        logger = PySparkLogger.getLogger(name)
        for handler in logger.handlers:
            handler.close()
        logger.handlers.clear()
        logger.addHandler(logging.FileHandler(path, delay=True))  # PySparkLogger formats it as JSON


def driver_environment(master: str, settings: Settings) -> dict[str, str]:
    """Environment a driver JVM on this machine reads when it starts (a running one keeps its own)."""
    env = {}
    if driver_on_loopback(master):
        # Bind the driver to loopback, and skip the "hostname resolves to a loopback address" check.
        env["SPARK_LOCAL_IP"] = LOOPBACK
    # Python workers (executors and the planner of Python data sources) run this interpreter,
    # whose environment has this package installed; set PYSPARK_PYTHON to use another.
    env["PYSPARK_PYTHON"] = sys.executable
    # Shuffle and spill files under data_dir; as the environment variable rather than
    # spark.local.dir, which makes Spark warn at every start.
    local_dir = (settings.data_dir / "spark" / "local").resolve()
    local_dir.mkdir(parents=True, exist_ok=True)
    env["SPARK_LOCAL_DIRS"] = str(local_dir)
    return env


def _prepare_environment(master: str, settings: Settings) -> None:
    for name, value in driver_environment(master, settings).items():
        os.environ.setdefault(name, value)  # what the user set wins


def _warm_session(
    asked: str | None, *, app_name: str, settings: Settings, conf: Mapping[str, str] | None
) -> SparkSession | None:
    """A session on the warm Spark, when it is on, the caller asked for no other master, and its
    server answers; else None (the caller starts its own Spark, as without it)."""
    if not settings.warm_spark or settings.spark_master.startswith("sc://"):
        return None
    if asked is not None and asked.strip() != settings.spark_master.strip():
        return None  # the run asked for a master of its own
    from pipeline_lib.spark.warm import answers

    if not answers(settings):
        log.warning(
            "WORKBENCH_WARM_SPARK is true but nothing answers at %s (is `workbench up` running?); "
            "this run starts its own Spark",
            settings.spark_connect_url,
        )
        return None
    spark = attach_warm(settings, app_name=app_name, conf=conf)
    # The server keeps a session's state (checkpointed data included) until it is released or an
    # hour idle: released when this process (a run's kernel) ends, so runs do not pile up there.
    atexit.register(_release, spark)
    return spark


def attach_warm(settings: Settings, *, app_name: str, conf: Mapping[str, str] | None = None) -> SparkSession:
    """A session on the warm Spark at `settings.spark_connect_url`, with the data source."""
    from pipeline_lib.settings import spark_connect_token

    # Read by PySpark's Connect client; this process's own (a run's kernel), so no other sees it.
    os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = spark_connect_token(settings)
    return _connect_session(settings.spark_connect_url, app_name=app_name, settings=settings, conf=conf)


def _release(spark: SparkSession) -> None:
    try:
        spark.stop()
    except Exception:  # the server may be gone already; nothing is left to release then
        log.debug("releasing the warm Spark session failed", exc_info=True)


def _connect_session(
    master: str, *, app_name: str, settings: Settings, conf: Mapping[str, str] | None
) -> SparkSession:
    runtime = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        **(conf or {}),
    }
    _allow_deep_plans()
    builder = SparkSession.builder.remote(master).appName(app_name)
    for key, value in runtime.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    register(spark, settings)
    return spark


def _allow_deep_plans() -> None:
    """A Connect client sends its plans as protobuf, one nesting level per expression; the clean's
    (a program of steps per field) nest deeper than protobuf's default limit of 100, which fails
    them in the client ("Exceeded upb_DecodeOptions_MaxDepth"). Lifted for this process; the
    messages come from its own code, and the server has its own limit."""
    from google.protobuf.internal import api_implementation

    if api_implementation.Type() == "upb":
        from google._upb import _message  # type: ignore[import-untyped]

        _message.SetAllowOversizeProtos(True)
    else:
        from google.protobuf.internal import decoder

        decoder.SetRecursionLimit(10_000)


def _log4j2_file(spark_dir: Path) -> Path:
    path = spark_dir / "log4j2.properties"
    if not path.exists() or path.read_text() != _LOG4J2:
        spark_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(_LOG4J2)
        temporary.replace(path)  # atomic: a concurrent start never reads half a file
    return path
