"""Spark's class-data archive for the benchmarks: their Spark runs start as a user's do once the
archive exists (`pipeline_lib.spark.class_archive`), though each has a fresh data dir, where a
run would otherwise build one in the background beside the run being measured.

`WORKBENCH_SPARK_CLASS_ARCHIVE=false` in the environment measures Spark without it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipeline_lib.settings import Settings
from pipeline_lib.spark import class_archive

# Built once per machine and installation (the archive's name says which); shared by the benchmarks.
SHARED_DATA_DIR = Path(tempfile.gettempdir()) / "wb-bench-class-archive"


def provide(data_dir: Path) -> None:
    """This installation's archive in `data_dir` (a link to the shared one, built first if need be)."""
    if not Settings(data_dir=data_dir).spark_class_archive:
        return
    archive = class_archive.build(Settings(data_dir=SHARED_DATA_DIR, spark_class_archive=True))
    folder = class_archive.folder(Settings(data_dir=data_dir))
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / archive.name).exists():
        os.link(archive, folder / archive.name)
