"""A class-data archive for the driver JVMs `get_spark` and the warm Spark start: Spark's classes
mapped ready-made from one file instead of read, parsed and verified from its jars at every start.

A cold `local[2]` session on this machine (2 cores, quiet, 2026-12-05, two of each): started in
3.7-3.9 s with it against 7.0-7.2 s without, and its first job took 0.9 s against 2.0-2.1 s
(HotSpot's dynamic CDS archive, JDK 13 and later: `-XX:ArchiveClassesAtExit` writes it when a JVM
exits, `-XX:SharedArchiveFile` maps it). The archive belongs to one Java and one Spark
(`installation_key`): about 160 MB under `<data dir>/spark/class-archive/`, one installation's at
a time. The first `get_spark` that finds none starts a build in the background at the lowest CPU
priority (`workbench spark-archive` builds it in the foreground); sessions until it ends start as
before. Nothing here can fail a session: an archive that cannot be used or built is skipped.

A JVM that maps a truncated archive dies (SIGBUS), so one is used only whole: a build writes it
under a temporary name, checks it by starting a session that must map it (`-Xshare:on`), and
renames it to a name that carries its size, which every use compares. A JVM that cannot use an
archive for another reason (another class path: `spark.driver.extraClassPath`) starts without it,
silently. Sessions retry a failed build a day later (`<key>.failed` says why);
`workbench spark-archive` retries at once.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from pipeline_lib.logs import log_dir
from pipeline_lib.parent_watch import on_parent_exit
from pipeline_lib.settings import Settings, get_settings
from pipeline_lib.spark.sample_work import sample_work

log = logging.getLogger(__name__)

MODULE = "pipeline_lib.spark.class_archive"  # run with -m: the build and its two sessions
APP_NAME = "workbench-class-archive"  # of the build's sessions (in spark.log's headings)
SUFFIX = ".jsa"
DRIVER_OPTIONS = "spark.driver.extraJavaOptions"
# An archive this JVM cannot use is skipped without the warning HotSpot prints on stdout (a
# kernel would show it in the notebook).
QUIET = "-Xlog:cds*=off"
SESSION_TIMEOUT = 600.0  # seconds for each of the build's sessions (about 20 s each, idle machine)
RETRY_AFTER = 24 * 3600.0  # seconds before sessions retry a failed build
# Starts its arguments in the background and exits at once: the build is then a child of init (or
# of the nearest subreaper), which reaps it when it ends. A child of the starting process would stay
# a zombie when that process has become another program meanwhile: `workbench spark-connect` execs
# the warm Spark's JVM, which reaps no child it did not start.
DETACH = ["/bin/sh", "-c", '"$@" &', "sh"]


def start_detached(
    args: list[str], *, env: Mapping[str, str] | None = None, output: int | IO[Any] = 2
) -> int:
    """Start `args` in the background, detached (`DETACH`) and in a session of its own (a Ctrl-C
    meant for the starting process, a notebook's or `workbench up`'s, does not reach it), its
    stdout and stderr to `output` (default this process's stderr, whatever object sys.stderr is).
    The shell's exit status: 0 once started."""
    return subprocess.run(
        [*DETACH, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        start_new_session=True,
        close_fds=True,
        check=False,
    ).returncode


def folder(settings: Settings) -> Path:
    return (settings.data_dir / "spark" / "class-archive").resolve()


def build_log(settings: Settings) -> Path:
    return log_dir(settings.data_dir) / "spark-class-archive.log"


def installation_key() -> str | None:
    """What an archive is valid for: the `java` that `spark-submit` runs (`$JAVA_HOME/bin/java`,
    else the first on PATH) with its `lib/modules`, and the Spark it runs (its version and jars);
    None without a Java."""
    import pyspark
    from pyspark.find_spark_home import _find_spark_home

    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not found or not Path(found).exists():
        return None
    java = Path(found).resolve()
    jars = sorted((Path(_find_spark_home()) / "jars").glob("*.jar"))
    digest = hashlib.sha256(pyspark.__version__.encode())
    for path in [java, java.parent.parent / "lib" / "modules", *jars]:
        stat = path.stat() if path.exists() else None
        digest.update(f"{path}\0{stat and stat.st_size}\0{stat and stat.st_mtime_ns}\n".encode())
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
    # Spark splits its Java options at spaces: a data dir with spaces or quotes goes without.
    if not settings.spark_class_archive or any(c.isspace() or c in "\"'\\" for c in str(folder(settings))):
        return options
    try:
        key = installation_key()
        archive = ready_archive(settings, key) if key else None
        if archive is None:
            if key is not None:
                start_build(settings, key)
            return options
    except OSError as exc:  # a speed-up: never the reason a session fails
        log.debug("no class-data archive for this Spark: %s", exc)
        return options
    extra = f"-XX:SharedArchiveFile={archive} {QUIET}"
    options[DRIVER_OPTIONS] = f"{options.get(DRIVER_OPTIONS, '')} {extra}".strip()
    return options


def _marker(settings: Settings, key: str, kind: str) -> Path:
    return folder(settings) / f"{key}.{kind}"


@contextmanager
def _lock(settings: Settings, key: str) -> Iterator[bool]:
    """Whether this process holds the build lock of `key` (an exclusive `flock`, which the system
    drops when its holder dies); held inside the block."""
    folder(settings).mkdir(parents=True, exist_ok=True)
    with _marker(settings, key, "building").open("a") as stream:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)


def _failed_recently(settings: Settings, key: str) -> bool:
    try:
        return time.time() - _marker(settings, key, "failed").stat().st_mtime < RETRY_AFTER
    except FileNotFoundError:
        return False


def start_build(settings: Settings, key: str) -> None:
    """Start `workbench spark-archive` in the background, unless one is running or one failed
    less than `RETRY_AFTER` ago."""
    if _failed_recently(settings, key):
        return
    with _lock(settings, key) as free:
        if not free:
            return
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(settings.data_dir.resolve())}
    with build_log(settings).open("ab") as stream:
        status = start_detached(build_command(), env=env, output=stream)  # a kernel's end leaves it be
    if status != 0:
        log.debug("could not start a build of the class-data archive (sh exit %s)", status)
        return
    log.info("building Spark's class-data archive in the background (log: %s)", build_log(settings))


def build_command() -> list[str]:
    """The background build `start_build` starts."""
    return [sys.executable, "-m", MODULE, "--background"]


class BuildError(RuntimeError):
    """The archive could not be built; the message says why."""


def build(settings: Settings) -> Path:
    """This installation's archive, built first if there is none: a session that runs a sample of
    Spark's work writes it when its JVM exits, a second session must map it, then it is renamed
    into place. Raises `BuildError` (and leaves `<key>.failed`) when that does not work."""
    key = installation_key()
    if key is None:
        raise BuildError("no Java found (JAVA_HOME or java on PATH)")
    with _lock(settings, key) as held:
        if not held:
            raise BuildError("another build of it is running")
        ready = ready_archive(settings, key)
        if ready is not None:
            return ready
        temporary = folder(settings) / f"{key}.tmp"
        try:
            _session(settings, "--dump", temporary)
            if not temporary.exists():
                raise BuildError("the JVM wrote no archive")
            _session(settings, "--check", temporary)
            archive = folder(settings) / f"{key}-{temporary.stat().st_size}{SUFFIX}"
            temporary.replace(archive)  # atomic: a JVM starting now finds no archive or this one, whole
        except Exception as exc:
            temporary.unlink(missing_ok=True)
            with suppress(OSError):  # a full disk: the error below says so
                _marker(settings, key, "failed").write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {exc}\n")
            raise BuildError(str(exc)) from exc
    _marker(settings, key, "failed").unlink(missing_ok=True)
    _remove_other_installations(settings, key)
    return archive


def _remove_other_installations(settings: Settings, key: str) -> None:
    """Archives and leftovers of other Java or Spark installations (an upgrade's predecessor),
    except while one of them builds; their lock files (empty) stay, as a lock must."""
    for path in list(folder(settings).iterdir()):
        other = path.name.split(".")[0].split("-")[0]
        if other == key or path.suffix == ".building":
            continue
        with _lock(settings, other) as free:
            if free:
                path.unlink(missing_ok=True)


def _session(settings: Settings, step: str, archive: Path) -> None:
    """One of the build's sessions, in a process group of its own (one driver JVM per process):
    killed whole when it takes too long or the build is stopped, so no JVM writes on afterwards."""
    command = [sys.executable, "-m", MODULE, step, str(archive)]
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(settings.data_dir.resolve())}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=SESSION_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise BuildError(f"the {step[2:]} session took over {SESSION_TIMEOUT:.0f} s") from None
    except BaseException:  # the build is stopping (Ctrl-C, SIGTERM)
        _kill(process)
        raise
    if process.returncode != 0:
        last = "\n".join(output.strip().splitlines()[-10:])
        raise BuildError(f"the {step[2:]} session failed (exit {process.returncode}):\n{last}")


def _kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # a JVM killed writes no archive
    process.wait()


def stop_on_sigterm() -> None:
    """Make a SIGTERM end this process's build as Ctrl-C does: its session killed first."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _run_session(step: str, archive: Path) -> None:
    """`--dump`: start a driver JVM that writes `archive` when it exits, run a sample of the work
    the clean and process steps give Spark, and wait for the JVM's exit. `--check`: start one that
    must map `archive` (the JVM refuses to start otherwise) and run a job."""
    from pyspark import SparkContext

    # Its process group, the JVM with it, is killed once the build that started it is gone (killed
    # outright: it could not kill the session itself).
    on_parent_exit(os.getppid(), lambda: os.killpg(0, signal.SIGKILL), interval=0.5, name="exit-with-build")

    from pipeline_lib.spark.session import get_spark, spark_conf

    # Its own JVM, whatever the settings: neither a warm Spark nor an archive.
    settings = get_settings().model_copy(update={"spark_class_archive": False, "warm_spark": False})
    master = "local[2]"
    base = spark_conf(master, settings=settings)[DRIVER_OPTIONS]
    if step == "--dump":
        # QUIET: the JVM lists every class it leaves out as it writes (hundreds of lines).
        flag = f"-XX:ArchiveClassesAtExit={archive} {QUIET}"
    else:
        flag = f"-XX:SharedArchiveFile={archive} -Xshare:on"
    conf = {DRIVER_OPTIONS: f"{base} {flag}", "spark.driver.memory": "1g"}
    spark = get_spark(master, app_name=APP_NAME, settings=settings, conf=conf)
    if step == "--check":
        spark.range(0, 10, 1, 2).selectExpr("sum(id)").collect()
        return
    sample_work(spark)
    spark.stop()
    process = getattr(SparkContext._gateway, "proc", None)
    if process is None or process.stdin is None:
        raise BuildError("no driver JVM process to wait for")
    process.stdin.close()  # the JVM exits when its stdin closes, writing the archive first
    if process.wait() != 0:
        raise BuildError(f"the driver JVM exited with {process.returncode}")


def main(argv: list[str] | None = None) -> None:
    """A build in the background, at the lowest CPU priority (`start_build`), or one of its sessions.
    `workbench spark-archive` builds in the foreground."""
    parser = argparse.ArgumentParser(description="Build Spark's class-data archive (see the module).")
    parser.add_argument("--background", action="store_true")
    parser.add_argument("--dump", type=Path)
    parser.add_argument("--check", type=Path)
    args = parser.parse_args(argv)
    if args.dump or args.check:
        _run_session("--dump" if args.dump else "--check", args.dump or args.check)
        return
    os.nice(19)  # the sessions and their JVMs inherit it: runs on this machine go first
    stop_on_sigterm()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        archive = build(get_settings())
    except (BuildError, OSError) as exc:
        print(f"{started} Spark's class-data archive was not built: {exc}", flush=True)
        raise SystemExit(1) from None
    print(f"{started} Spark's class-data archive: {archive} ({archive.stat().st_size / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
