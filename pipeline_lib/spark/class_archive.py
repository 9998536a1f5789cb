"""A class-data archive for the driver JVMs `get_spark` starts: Spark's classes mapped ready-made
from one file instead of read, parsed and verified from its jars at every start.

A cold `local[2]` session on this machine (2 cores, quiet, 16:57 UTC 2026-12-05): start 6.2-6.6 s
and a first job 1.9 s without, 3.5-3.8 s and 0.9 s with it (HotSpot's dynamic CDS archive,
JDK 13 and later: `-XX:ArchiveClassesAtExit` writes it when a JVM exits, `-XX:SharedArchiveFile`
maps it). The archive belongs to one Java and one Spark installation (`installation_key`), 160 MB
under `<data dir>/spark/class-archive/`. The first `get_spark` that finds none starts a build in
the background at the lowest CPU priority (`workbench spark-archive` builds it in the foreground);
that session and those until the build ends start as before.

A JVM that maps a truncated archive dies (SIGBUS), so one is used only whole: a build writes to a
temporary name, then checks its result by starting a session that must map it (`-Xshare:on`), and
renames it to a name that carries its size, which every use compares. A JVM that cannot use an
archive for another reason (another class path: `spark.driver.extraClassPath`) starts without it,
silently. A build that failed is not retried by `get_spark` for the same installation (the reason
is in `<key>.failed` beside it); `workbench spark-archive` retries.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from pipeline_lib.logs import log_dir
from pipeline_lib.settings import Settings, get_settings

log = logging.getLogger(__name__)

SUFFIX = ".jsa"
DRIVER_OPTIONS = "spark.driver.extraJavaOptions"
# An archive this JVM cannot use is skipped without the warning HotSpot prints on stdout (a
# kernel would show it in the notebook).
QUIET = "-Xlog:cds*=off"
MODULE = "pipeline_lib.spark.class_archive"  # run with -m: the build and its sessions
BUILD_TIMEOUT = 600.0  # seconds for each of the build's two sessions (a loaded 2-core machine: ~30 s)


def folder(settings: Settings) -> Path:
    return settings.data_dir / "spark" / "class-archive"


def build_log(settings: Settings) -> Path:
    return log_dir(settings.data_dir) / "spark-class-archive.log"


def java_executable() -> Path | None:
    """The `java` that `spark-submit` runs: `$JAVA_HOME/bin/java`, else the first on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def installation_key() -> str | None:
    """What an archive is valid for: this Java (its executable and `lib/modules`, whose classes
    the JDK's own archive holds) and this Spark (its version and jars); None without a Java."""
    import pyspark

    java = java_executable()
    if java is None:
        return None
    digest = hashlib.sha256()
    jars = Path(pyspark.__file__).parent / "jars"
    files = [java, java.parent.parent / "lib" / "modules", *sorted(jars.glob("*.jar"))]
    for path in files:
        stat = path.stat() if path.exists() else None
        digest.update(
            f"{path}\0{stat.st_size if stat else -1}\0{stat.st_mtime_ns if stat else -1}\n".encode()
        )
    digest.update(pyspark.__version__.encode())
    return digest.hexdigest()[:16]


def ready_archive(settings: Settings, key: str | None = None) -> Path | None:
    """The whole archive built for this installation, if there is one: named `<key>-<bytes>.jsa`,
    and that many bytes long."""
    key = key or installation_key()
    if key is None:
        return None
    for path in folder(settings).glob(f"{key}-*{SUFFIX}"):
        size = path.name[len(key) + 1 : -len(SUFFIX)]
        try:
            if size.isdigit() and path.stat().st_size == int(size):
                return path
        except OSError:  # replaced or removed meanwhile
            continue
    return None


def with_archive(options: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """`options` for a driver JVM about to start, its Java options extended to map the archive when
    one is ready; when none is and `settings.spark_class_archive` allows, a build starts in the
    background (this JVM starts without)."""
    options = dict(options)
    if not settings.spark_class_archive:
        return options
    key = installation_key()
    archive = ready_archive(settings, key) if key else None
    if archive is None:
        if key is not None:
            start_build(settings, key)
        return options
    if any(c.isspace() or c in "\"'\\" for c in str(archive)):
        return options  # Spark splits its Java options at spaces; a data dir with them goes without
    extra = f"-XX:SharedArchiveFile={archive} {QUIET}"
    options[DRIVER_OPTIONS] = f"{options.get(DRIVER_OPTIONS, '')} {extra}".strip()
    return options


def _failed_marker(settings: Settings, key: str) -> Path:
    return folder(settings) / f"{key}.failed"


def _lock(settings: Settings, key: str) -> Path:
    return folder(settings) / f"{key}.building"


def _holder(lock: Path) -> int | None:
    """The live process that holds `lock`, if any."""
    try:
        pid = int(lock.read_text().strip() or "0")
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def start_build(settings: Settings, key: str) -> None:
    """Start `workbench spark-archive` in the background, unless one runs or one failed for `key`."""
    if _failed_marker(settings, key).exists() or _holder(_lock(settings, key)) is not None:
        return
    command = [sys.executable, "-m", MODULE, "--background"]
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(settings.data_dir.resolve())}
    with build_log(settings).open("ab") as stream:
        subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=stream, stderr=stream, start_new_session=True
        )
    log.info("building Spark's class-data archive in the background (log: %s)", build_log(settings))


class BuildError(RuntimeError):
    """The archive could not be built; the message says why and where the log is."""


def build(settings: Settings, *, retry_failed: bool = True) -> Path:
    """Build this installation's archive (or return the one ready): a session that runs a sample
    of Spark's work writes it when its JVM exits, a second session must map it, then it is renamed
    into place. Raises `BuildError` (and leaves `<key>.failed`) when that does not work."""
    key = installation_key()
    if key is None:
        raise BuildError("no Java found (JAVA_HOME or java on PATH)")
    ready = ready_archive(settings, key)
    if ready is not None:
        return ready
    folder(settings).mkdir(parents=True, exist_ok=True)
    failed = _failed_marker(settings, key)
    if failed.exists() and not retry_failed:
        raise BuildError(f"an earlier build failed: {failed.read_text().strip()}")
    lock = _lock(settings, key)
    if not _take(lock):
        raise BuildError(f"another build is running (process {_holder(lock)})")
    temporary = folder(settings) / f"{key}.{os.getpid()}.tmp"
    try:
        failed.unlink(missing_ok=True)
        _session(settings, "--dump", temporary)
        if not temporary.exists():
            raise BuildError("the JVM wrote no archive")
        _session(settings, "--check", temporary)
        size = temporary.stat().st_size
        archive = folder(settings) / f"{key}-{size}{SUFFIX}"
        temporary.replace(archive)  # atomic: a JVM starting now maps the old name or this one, whole
        _remove_others(settings, keep=archive)
        return archive
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, Exception):
            failed.write_text(f"{exc}\n")
        raise
    finally:
        lock.unlink(missing_ok=True)


def _take(lock: Path) -> bool:
    """Hold `lock` (a file naming this process); False when a live process holds it."""
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _holder(lock) is not None:
                return False
            lock.unlink(missing_ok=True)  # left by a build that died
            continue
        with os.fdopen(descriptor, "w") as stream:
            stream.write(str(os.getpid()))
        return True
    return False


def _remove_others(settings: Settings, keep: Path) -> None:
    """Archives of other installations, and what builds that died left behind."""
    for path in folder(settings).iterdir():
        if path != keep and (path.suffix in (SUFFIX, ".tmp") or path.name.endswith(".failed")):
            if path.suffix == ".tmp" and _holder_of_temporary(path):
                continue
            path.unlink(missing_ok=True)


def _holder_of_temporary(path: Path) -> bool:
    """Whether the build that writes `path` (`<key>.<pid>.tmp`) still runs."""
    pid = path.name.split(".")[-2]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _session(settings: Settings, step: str, archive: Path) -> None:
    """One of the build's sessions, in a process of its own (one driver JVM per process)."""
    command = [sys.executable, "-m", MODULE, step, str(archive)]
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(settings.data_dir.resolve())}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BuildError(f"the {step[2:]} session took over {BUILD_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        last = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise BuildError(f"the {step[2:]} session failed (exit {done.returncode}): {last}")


def _run_session(step: str, archive: Path) -> None:
    """`--dump`: start a driver JVM that writes `archive` when it exits, run a sample of the work
    the clean and process steps give Spark, and wait for the JVM's exit. `--check`: start one that
    must map `archive` (the JVM refuses to start otherwise) and run a job."""
    from pyspark import SparkContext

    from pipeline_lib.spark.session import get_spark, spark_conf

    settings = get_settings().model_copy(update={"spark_class_archive": False})
    master = "local[2]"
    base = spark_conf(master, settings=settings)[DRIVER_OPTIONS]
    flag = (
        f"-XX:ArchiveClassesAtExit={archive}"
        if step == "--dump"
        else f"-XX:SharedArchiveFile={archive} -Xshare:on"
    )
    conf = {DRIVER_OPTIONS: f"{base} {flag} {QUIET}", "spark.driver.memory": "1g"}
    spark = get_spark(master, app_name="workbench-class-archive", settings=settings, conf=conf)
    if step == "--check":
        spark.range(0, 10, 1, 2).selectExpr("sum(id)").collect()
        return
    _sample_work(spark)
    spark.stop()
    gateway = SparkContext._gateway
    process = getattr(gateway, "proc", None)
    if process is None or process.stdin is None:
        raise BuildError("no driver JVM process to wait for")
    process.stdin.close()  # the JVM exits when its stdin closes, writing the archive first
    if process.wait(timeout=BUILD_TIMEOUT) != 0:
        raise BuildError(f"the driver JVM exited with {process.returncode}")


def _sample_work(spark) -> None:  # type: ignore[no-untyped-def]
    """Jobs of the kinds the clean and process steps run: Arrow batches through Python, text
    expressions, windows, grouping with quantiles, a join, a checkpoint, results to the driver."""
    import pyarrow as pa
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def through_python(batches):  # type: ignore[no-untyped-def]
        yield from batches

    frame = spark.range(0, 20_000, 1, 2).selectExpr(
        "cast(id as string) as submission_id",
        "concat('S', cast(id % 37 as string)) as school_id",
        "cast(id % 101 as double) as score",
        "id % 3 = 0 as consent",
        "timestamp_seconds(id) as submitted_at",
    )
    frame = frame.mapInArrow(through_python, frame.schema).localCheckpoint(eager=True)
    cleaned = frame.withColumn("name", F.upper(F.trim(F.regexp_replace("submission_id", "[^0-9]", ""))))
    ranked = cleaned.withColumn(
        "rank", F.row_number().over(Window.partitionBy("school_id").orderBy(F.desc("submitted_at")))
    )
    summary = ranked.groupBy("school_id").agg(
        F.count(F.lit(1)).alias("n"),
        F.percentile_approx("score", [0.25, 0.5, 0.75]).alias("quartiles"),
        F.avg("score").alias("mean"),
        F.collect_list("submission_id").alias("ids"),
    )
    summary.join(cleaned.select("school_id").distinct(), "school_id").toArrow()
    spark.createDataFrame(pa.table({"a": [1, 2], "b": ["x", "y"]}).to_pandas()).toPandas()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build Spark's class-data archive (see the module).")
    parser.add_argument("--background", action="store_true", help="at the lowest CPU priority, once")
    parser.add_argument("--dump", type=Path)
    parser.add_argument("--check", type=Path)
    args = parser.parse_args(argv)
    if args.dump or args.check:
        _run_session("--dump" if args.dump else "--check", args.dump or args.check)
        return
    if args.background:
        os.nice(19)  # the sessions and their JVMs inherit it: runs on this machine go first
    try:
        archive = build(get_settings(), retry_failed=not args.background)
    except BuildError as exc:
        print(f"Spark's class-data archive was not built: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"Spark's class-data archive: {archive} ({archive.stat().st_size / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
