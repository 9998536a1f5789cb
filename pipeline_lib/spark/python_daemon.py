"""Spark's Python daemon for `get_spark`'s sessions (`spark.python.daemon.module`): pyspark's own
daemon, importing pyspark from the installed package rather than from `pyspark.zip`.

Spark puts `$SPARK_HOME/python/lib/pyspark.zip` and py4j's zip first on its Python workers' path.
For a pip-installed pyspark, `SPARK_HOME` is that package, so the zip holds the very modules
installed beside it; but Python compiles every module it imports from a zip, each time (no .pyc
cache). The daemon, and every worker it forks for what it imports later, spent about 1 s
importing pyspark instead of 0.2 s: a session's first Python job took 1.1 s instead of 0.4 s.
So the zips of an installation that is on the path anyway move to the end (a fallback); other
zips (a Spark distribution's, whose version may differ from a pyspark installed here) stay.

It also imports what every worker imports (`PRELOADED`) before it forks them: once, not in each.
On a local master a zygote that did those imports ahead forks the daemon instead (`daemon_zygote`),
and this process only hands over to it.

Executors import this module by name, as they do the `workbench` data source: the package must
be installed in the Python their workers run (`PYSPARK_PYTHON`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import runpy
import sys

from pipeline_lib.spark import daemon_zygote

MODULE = "pipeline_lib.spark.python_daemon"
# What every worker of the jobs' reads and writes imports (Arrow, pandas for pyspark's Arrow
# serializers, the data source and its db-api client), imported once by the daemon before it forks
# its workers, which then start with them. A fresh Spark's first read of 1,000,000 raw records
# (3 pairs, 2026-12-06): the workers' CPU 1.8 s against 2.6-2.9 s, the read 6.1-7.3 s against 7.1-7.4 s.
PRELOADED = ("pyarrow", "pandas", "pipeline_lib.spark.source")
_ZIP_FOLDER = ("pyspark", "python", "lib")  # where an installed pyspark keeps its zips


def installation_zips(path: list[str]) -> list[str]:
    """The entries of `path` that are zips of a pyspark package importable from another entry of
    `path` (`<entry>/pyspark/python/lib/<name>.zip`): the same installation, in a slower form."""
    entries = {os.path.realpath(entry) for entry in path if entry}
    zips = []
    for entry in (e for e in path if e.endswith(".zip")):
        # The zip's folder as (the folder pyspark is installed in, *the three folders below it)
        holder, *below = os.path.dirname(os.path.realpath(entry)).rsplit(os.sep, len(_ZIP_FOLDER))
        if tuple(below) == _ZIP_FOLDER and holder in entries:
            zips.append(entry)
    return zips


def preload_imports() -> None:
    """Import `PRELOADED`; a module that does not import here is imported (and its error reported)
    by the worker that needs it, as without this."""
    for name in PRELOADED:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def main() -> None:
    """pyspark's daemon (its command line as Spark gave it), with the installation's zips last;
    forked ready-made by its Spark's zygote when there is one (`daemon_zygote`)."""
    zips = installation_zips(sys.path)
    sys.path[:] = [entry for entry in sys.path if entry not in zips] + zips
    if (zygote := os.environ.get(daemon_zygote.ENV)) and daemon_zygote.hand_over(zygote, sys.path):
        return
    preload_imports()
    runpy.run_module("pyspark.daemon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
