"""Spark's class-data archive (`pipeline_lib.spark.class_archive`): built in the background by the
first session that finds none, mapped by the driver JVMs started after it, and never handed to a
JVM unless whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline_lib.parent_watch import command_line
from pipeline_lib.settings import Settings
from pipeline_lib.spark import class_archive
from pipeline_lib.spark.class_archive import DRIVER_OPTIONS
from tests.processes import children, descendants, python_output, running, wait_for

# A new process's session on the default settings: the Java options its driver JVM started with.
SESSION = """
from pipeline_lib.spark.session import get_spark
spark = get_spark("local[1]")
spark.range(3).count()
bean = spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
print("\\n".join(str(a) for a in bean.getInputArguments()))
"""


def _default_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This environment with the archive on, as a user has it (the test suite turns it off)."""
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_SPARK_CLASS_ARCHIVE"}
    return {**env, "WORKBENCH_DATA_DIR": str(data_dir), **extra}


def _settings(data_dir: Path, **values: object) -> Settings:
    """Settings as a user has them (the archive on, unless `values` say otherwise)."""
    return Settings(data_dir=data_dir, **{"spark_class_archive": True, **values})  # type: ignore[arg-type]


def _key() -> str:
    key = class_archive.installation_key()
    assert key is not None, "no Java here"
    return key


def _built(settings: Settings, deadline: float) -> bool:
    """Whether the build has ended with an archive (its lock free); fails on a failed build."""
    failed = list(class_archive.folder(settings).glob("*.failed"))
    assert not failed, failed[0].read_text() + class_archive.build_log(settings).read_text()
    assert time.monotonic() < deadline, class_archive.build_log(settings).read_text()
    with class_archive._lock(settings, _key()) as free:
        return free and class_archive.ready_archive(settings) is not None


@pytest.mark.slow
@pytest.mark.spark
def test_the_first_session_builds_the_archive_and_the_next_maps_spark_classes_from_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    settings = _settings(data_dir)
    first = python_output(SESSION, env=_default_env(data_dir), timeout=300)
    assert "-XX:SharedArchiveFile" not in first  # none yet: this JVM starts as before

    deadline = time.monotonic() + 480  # the build runs at the lowest priority beside other tests
    while not _built(settings, deadline):
        time.sleep(1)
    archive = class_archive.ready_archive(settings)
    assert archive is not None and archive.stat().st_size > 10 * 2**20
    names = sorted(p.name for p in class_archive.folder(settings).iterdir())
    assert names == sorted([archive.name, f"{_key()}.building"])  # no temporary file left

    # The next driver JVM maps it: its Spark classes come from the archive, not from Spark's jars.
    classes = tmp_path / "classes"
    classes.mkdir()
    env = _default_env(data_dir, JDK_JAVA_OPTIONS=f"-Xlog:class+load=info:file={classes}/%p.log")
    second = python_output(SESSION, env=env, timeout=300)
    assert f"-XX:SharedArchiveFile={archive}" in second.splitlines()
    loaded = "".join(path.read_text() for path in classes.iterdir())
    assert "org.apache.spark.SparkContext source: shared objects file (top)" in loaded


def test_an_archive_shorter_than_its_name_says_is_never_handed_to_a_jvm(tmp_path: Path) -> None:
    """A JVM that maps a truncated archive dies (SIGBUS): the name carries the size it must have."""
    settings = _settings(tmp_path)
    folder = class_archive.folder(settings)
    folder.mkdir(parents=True)
    (folder / f"{_key()}.failed").write_text("an earlier build failed\n")  # so no build starts here
    archive = folder / f"{_key()}-1000.jsa"
    archive.write_bytes(b"\0" * 999)
    options = {DRIVER_OPTIONS: "-Da=b", "spark.master": "local[1]"}
    assert class_archive.with_archive(options, settings) == options
    assert not class_archive.build_log(settings).exists()  # and no build was started

    archive.write_bytes(b"\0" * 1000)  # whole
    extended = class_archive.with_archive(options, settings)[DRIVER_OPTIONS]
    assert extended == f"-Da=b -XX:SharedArchiveFile={archive} {class_archive.QUIET}"


def test_turned_off_no_archive_is_used_or_built(tmp_path: Path) -> None:
    settings = _settings(tmp_path, spark_class_archive=False)
    folder = class_archive.folder(settings)
    folder.mkdir(parents=True)
    (folder / f"{_key()}-10.jsa").write_bytes(b"\0" * 10)
    assert class_archive.with_archive({DRIVER_OPTIONS: "-Da=b"}, settings) == {DRIVER_OPTIONS: "-Da=b"}
    assert not class_archive.build_log(settings).exists()


def test_sessions_retry_a_failed_build_a_day_later(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    failed = class_archive.folder(settings) / f"{_key()}.failed"
    failed.parent.mkdir(parents=True)
    failed.write_text("the dump session failed\n")
    assert class_archive._failed_recently(settings, _key())
    long_ago = time.time() - class_archive.RETRY_AFTER - 60
    os.utime(failed, (long_ago, long_ago))
    assert not class_archive._failed_recently(settings, _key())


def test_the_build_lock_is_held_while_its_holder_lives_and_free_once_it_is_killed(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with class_archive._lock(settings, _key()) as free:
            assert not free
        class_archive.start_build(settings, _key())  # a session's: nothing started beside it
        assert not class_archive.build_log(settings).exists()
        with pytest.raises(class_archive.BuildError, match="another build of it is running"):
            class_archive.build(settings)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with class_archive._lock(settings, _key()) as free:
        assert free  # the system dropped a dead holder's lock


HOLD_LOCK = """
import sys, time
from pathlib import Path
from pipeline_lib.settings import Settings
from pipeline_lib.spark import class_archive
settings = Settings(data_dir=Path(sys.argv[1]))
with class_archive._lock(settings, class_archive.installation_key()) as held:
    print("held" if held else "not held", flush=True)
    time.sleep(120)
"""


def test_workbench_spark_archive_says_when_another_build_runs(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    workbench = Path(sys.executable).parent / "workbench"
    with class_archive._lock(settings, _key()) as held:
        assert held
        done = subprocess.run(
            [str(workbench), "spark-archive"], env=_default_env(tmp_path), capture_output=True, text=True
        )
    assert done.returncode == 1
    assert "another build of it is running" in done.stderr


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_build_stopped_while_its_jvm_runs_leaves_no_process_and_no_archive(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGTERM: the build kills its session first; SIGKILL: the session sees its build gone and
    kills itself. Either way no JVM lives on to write an archive (or half of one) later."""
    settings = _settings(tmp_path)
    workbench = Path(sys.executable).parent / "workbench"
    build = subprocess.Popen(
        [str(workbench), "spark-archive"], env=_default_env(tmp_path), start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not any(DUMPING_JVM in command_line(pid) for pid in descendants(build.pid)):
            assert build.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        below = descendants(build.pid)
        build.send_signal(signum)
        assert build.wait(timeout=30) != 0
        deadline = time.monotonic() + 30
        while any(running(pid) for pid in below):
            assert time.monotonic() < deadline, [command_line(pid) for pid in below if running(pid)]
            time.sleep(0.2)
    finally:
        if build.poll() is None:
            os.killpg(build.pid, signal.SIGKILL)
            build.wait()
    assert [p.name for p in class_archive.folder(settings).iterdir()] == [f"{_key()}.building"]


# The driver JVM that writes the archive: the option is an argument of its own there, and within
# spark.driver.extraJavaOptions in the command lines that start it.
DUMPING_JVM = b"\0-XX:ArchiveClassesAtExit="


# Starts a build (a quick stand-in that prints its process id) as a session does, then becomes
# another program, as `workbench spark-connect` becomes the warm Spark's JVM.
BUILD_THEN_EXEC = """
import os, sys
from pathlib import Path
from pipeline_lib.settings import Settings
from pipeline_lib.spark import class_archive
class_archive.build_command = lambda: [sys.executable, "-c", "import os; print('build', os.getpid())"]
class_archive.start_build(Settings(data_dir=Path(sys.argv[1])), "test-key")
os.execv("/bin/sleep", ["sleep", "60"])
"""


def test_a_build_is_not_left_a_zombie_of_the_program_its_starter_became(tmp_path: Path) -> None:
    starter = subprocess.Popen([sys.executable, "-c", BUILD_THEN_EXEC, str(tmp_path)])
    log = class_archive.build_log(_settings(tmp_path))
    try:
        wait_for(lambda: log.exists() and "build" in log.read_text(), 60, "the build to start")
        build = int(log.read_text().split()[1])
        wait_for(lambda: command_line(starter.pid).startswith(b"sleep"), 60, "the starter's exec")
        wait_for(lambda: not running(build), 60, "the build to end")
        # The starter, now `sleep`, never reaps a child: the build must not be one.
        assert build not in children(starter.pid)
    finally:
        starter.kill()
        starter.wait()
