"""Spark's Python workers import pyspark from the installed package, not from pyspark.zip."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from pipeline_lib.spark.python_daemon import installation_zips


def _installation(site: Path) -> list[str]:
    lib = site / "pyspark" / "python" / "lib"
    lib.mkdir(parents=True)
    return [str(lib / "pyspark.zip"), str(lib / "py4j-0.10.9.9-src.zip")]


def test_the_zips_of_an_installation_on_the_path_are_found(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    zips = _installation(site)
    assert installation_zips([*zips, "", str(site)]) == zips
    # Through a link to the same folder, too.
    (tmp_path / "linked").symlink_to(site)
    assert installation_zips([*zips, str(tmp_path / "linked")]) == zips


def test_other_zips_stay_first(tmp_path: Path) -> None:
    # A Spark distribution's zips (its version may not be the pyspark installed here), and an
    # installation whose folder is not on the path.
    distribution = tmp_path / "spark-4.0.0" / "python" / "lib" / "pyspark.zip"
    zips = _installation(tmp_path / "elsewhere")
    assert installation_zips([str(distribution), *zips, str(tmp_path / "site-packages")]) == []
    assert installation_zips([str(tmp_path / "site-packages" / "other.zip")]) == []


def _imported_from(_: object) -> list[tuple[str, list[str]]]:
    import sys

    import pyspark

    return [(pyspark.__file__ or "", list(sys.path))]


def test_workers_import_the_installed_pyspark(spark: SparkSession) -> None:
    (pyspark_file, path), *_ = spark.sparkContext.parallelize([0], 1).mapPartitions(_imported_from).collect()
    assert ".zip" not in pyspark_file, pyspark_file
    installed = str(Path(pyspark_file).parent.parent)
    # Spark's zips are still on the path, after the installation: a fallback.
    zips = [p for p in path if Path(p).parent.parts[-3:] == ("pyspark", "python", "lib")]
    assert {Path(p).name.split("-")[0] for p in zips} == {"pyspark.zip", "py4j"}
    assert installed in path and all(path.index(p) > path.index(installed) for p in zips)


def _daemon_libraries(_: object) -> list[str]:
    """The shared libraries the worker's parent, the daemon, has mapped."""
    import os

    maps = Path(f"/proc/{os.getppid()}/maps").read_text()
    return sorted({line.split()[-1] for line in maps.splitlines() if line.endswith(".so") or ".so." in line})


def test_the_daemon_imports_what_workers_use_before_forking_them(spark: SparkSession) -> None:
    """Arrow, pandas and the db-api client's gRPC are in the daemon's memory, which its forked
    workers share, rather than imported again by each worker."""
    libraries = spark.sparkContext.parallelize([0], 1).mapPartitions(_daemon_libraries).collect()
    names = [Path(library).name for library in libraries]
    assert any(name.startswith("libarrow_python") for name in names), names
    assert any("pandas/_libs" in library for library in libraries), names
    assert any(name.startswith("cygrpc") for name in names), names


def _daemon_forked_by(_: object) -> list[tuple[str, int]]:
    """The command line of the process the worker's daemon was forked by, and whether the
    worker's Python hashes strings with a random seed."""
    import os
    import sys

    stat = Path(f"/proc/{os.getppid()}/stat").read_text()
    forked_by = int(stat.rsplit(")", 1)[1].split()[1])
    command = Path(f"/proc/{forked_by}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return [(command, sys.flags.hash_randomization)]


def test_a_runs_own_driver_forks_its_daemon_from_a_zygote_started_with_it(spark: SparkSession) -> None:
    """The zygote imports what the daemon needs while the driver JVM starts; the daemon Spark
    asks for is forked from it, for the process that started the JVM (`daemon_zygote`), with the
    start-up settings Spark gives its workers (PYTHONHASHSEED=0: no random seed)."""
    import os

    from pipeline_lib.spark import daemon_zygote

    ((forked_by, randomized),) = (
        spark.sparkContext.parallelize([0], 1).mapPartitions(_daemon_forked_by).collect()
    )
    assert " ".join(daemon_zygote.command(os.getpid())[1:]) in forked_by, forked_by
    assert randomized == 0
