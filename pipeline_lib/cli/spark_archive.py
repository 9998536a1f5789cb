"""`workbench spark-archive`: build Spark's class-data archive now (`pipeline_lib.spark.class_archive`)."""

from __future__ import annotations

import typer

from pipeline_lib.settings import get_settings


def spark_archive() -> None:
    """Build Spark's class-data archive now, or again after a build failed: driver JVMs that map it
    start about 3 s sooner (the first Spark session that finds none builds it in the background)."""
    from pipeline_lib.spark.class_archive import BuildError, build, stop_on_sigterm

    stop_on_sigterm()
    try:
        archive = build(get_settings())
    except (BuildError, OSError) as exc:
        typer.echo(f"error: Spark's class-data archive was not built: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Spark's class-data archive: {archive} ({archive.stat().st_size / 2**20:.0f} MB)")
