"""Spark's class-data archive (`pipeline_lib.spark.class_archive`): built in the background by the
first session that finds none, mapped by the driver JVMs started after it, and never handed to a
JVM unless whole."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline_lib.settings import Settings
from pipeline_lib.spark import class_archive
from pipeline_lib.spark.class_archive import DRIVER_OPTIONS
from tests.processes import python_output

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


@pytest.mark.slow
@pytest.mark.spark
def test_the_first_session_builds_the_archive_and_the_next_maps_sparks_classes_from_it(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "var"
    settings = _settings(data_dir)
    first = python_output(SESSION, env=_default_env(data_dir), timeout=300)
    assert "-XX:SharedArchiveFile" not in first  # none yet: this JVM starts as before

    deadline = time.monotonic() + 480  # the build runs at the lowest priority beside other tests
    while class_archive.ready_archive(settings) is None:
        failed = list(class_archive.folder(settings).glob("*.failed"))
        assert not failed, failed[0].read_text() + "\n" + class_archive.build_log(settings).read_text()
        assert time.monotonic() < deadline, class_archive.build_log(settings).read_text()
        time.sleep(1)
    archive = class_archive.ready_archive(settings)
    assert archive is not None and archive.stat().st_size > 10 * 2**20
    assert sorted(p.name for p in class_archive.folder(settings).iterdir()) == [archive.name]  # lock gone

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
    key = class_archive.installation_key()
    assert key is not None  # Java is installed here
    folder = class_archive.folder(settings)
    folder.mkdir(parents=True)
    (folder / f"{key}.failed").write_text("an earlier build failed\n")  # so no build starts here
    archive = folder / f"{key}-1000.jsa"
    archive.write_bytes(b"\0" * 999)
    options = {DRIVER_OPTIONS: "-Da=b", "spark.master": "local[1]"}
    assert class_archive.with_archive(options, settings) == options
    assert not class_archive.build_log(settings).exists()  # and no build was started

    archive.write_bytes(b"\0" * 1000)  # whole
    extended = class_archive.with_archive(options, settings)[DRIVER_OPTIONS]
    assert extended == f"-Da=b -XX:SharedArchiveFile={archive} {class_archive.QUIET}"


def test_turned_off_no_archive_is_used_or_built(tmp_path: Path) -> None:
    settings = _settings(tmp_path, spark_class_archive=False)
    key = class_archive.installation_key()
    folder = class_archive.folder(settings)
    folder.mkdir(parents=True)
    (folder / f"{key}-10.jsa").write_bytes(b"\0" * 10)
    assert class_archive.with_archive({DRIVER_OPTIONS: "-Da=b"}, settings) == {DRIVER_OPTIONS: "-Da=b"}
    assert not class_archive.build_log(settings).exists()


def test_a_build_takes_the_lock_of_one_that_died_but_not_of_one_running(tmp_path: Path) -> None:
    lock = tmp_path / "key.building"
    lock.write_text(str(os.getpid()))  # a live process
    assert not class_archive._take(lock)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock.write_text(finished.stdout.strip())  # a process that has exited
    assert class_archive._take(lock)
    assert lock.read_text() == str(os.getpid())


def test_workbench_spark_archive_says_when_another_build_runs(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    key = class_archive.installation_key()
    class_archive.folder(settings).mkdir(parents=True)
    (class_archive.folder(settings) / f"{key}.building").write_text(str(os.getpid()))
    workbench = Path(sys.executable).parent / "workbench"
    done = subprocess.run(
        [str(workbench), "spark-archive"],
        env=_default_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"another build is running (process {os.getpid()})" in done.stderr
