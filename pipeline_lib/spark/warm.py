"""The warm Spark: a Spark Connect server that `workbench up` keeps running (`WORKBENCH_WARM_SPARK`),
so that a run needing Spark attaches to a started driver instead of starting a JVM of its own.

The server is PySpark's own (`spark-submit` of the Connect server class from the pip package), on
`WORKBENCH_SPARK_MASTER` with the configuration `get_spark` gives a driver of its own, and with this
interpreter for its Python workers: the `workbench` data source and the clean's commits run there
as they would in a run's own Spark. It listens on loopback only and wants a token (a Connect server
runs whatever Python a client sends): `<data dir>/secrets/spark_connect_token`, handed to it in its
environment, never on its command line (which every local user can read).
"""

from __future__ import annotations

import socket
from pathlib import Path

from pipeline_lib.settings import Settings, child_environment, spark_connect_token
from pipeline_lib.spark.class_archive import with_archive
from pipeline_lib.spark.engine import local_cores
from pipeline_lib.spark.session import LOOPBACK, driver_environment, spark_conf

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
APP_NAME = "workbench warm Spark"


def spark_submit() -> Path:
    """PySpark's `spark-submit`, from the package this interpreter imports."""
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-submit"


def server_command(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The command that runs the warm Spark in the foreground, and its environment."""
    master = settings.spark_master
    conf = {
        **spark_conf(master, settings=settings, long_lived=True),
        "spark.connect.grpc.binding.address": LOOPBACK,
        "spark.connect.grpc.binding.port": str(settings.spark_connect_port),
    }
    conf = with_archive(conf, settings)  # its driver starts sooner, and `workbench up` with it
    cores = local_cores(master)
    if cores is not None:
        # A Connect client has no SparkContext to ask; the data source's reads take it from here.
        conf["spark.default.parallelism"] = str(cores)
    args = [str(spark_submit()), "--class", SERVER_CLASS, "--name", APP_NAME, "--master", master]
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    env = {
        **driver_environment(master, settings),
        **child_environment(settings),  # what the user set wins, as for a run's own driver
        "SPARK_CONNECT_AUTHENTICATE_TOKEN": spark_connect_token(settings),
        # Its Python workers are classic PySpark, whatever the environment says.
        "SPARK_CONNECT_MODE": "0",
    }
    return args, env


def answers(settings: Settings, timeout: float = 0.5) -> bool:
    """Whether the warm Spark's server accepts connections (it listens once its driver is up)."""
    try:
        with socket.create_connection((LOOPBACK, settings.spark_connect_port), timeout=timeout):
            return True
    except OSError:
        return False
