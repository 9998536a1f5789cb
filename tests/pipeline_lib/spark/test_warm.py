"""The warm Spark's command and when a run attaches to it (pure logic; `tests/e2e/test_warm_spark.py`
runs the server under `workbench up` and runs attached to it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from pipeline_lib.settings import Settings
from pipeline_lib.spark import class_archive, session, warm


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, spark_master="local[2]", **values)  # type: ignore[arg-type]


def _conf(args: list[str]) -> dict[str, str]:
    """The Spark settings the server's command gives with `--conf NAME=VALUE`."""
    return dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")


def test_the_server_listens_on_loopback_and_its_token_stays_off_its_command_line(tmp_path: Path) -> None:
    settings = _settings(tmp_path, warm_spark=True, spark_connect_port=15123)
    args, env = warm.server_command(settings)
    assert Path(args[0]).name == "spark-submit" and Path(args[0]).is_file()
    assert args[args.index("--class") + 1] == warm.SERVER_CLASS
    assert args[args.index("--master") + 1] == "local[2]"
    conf = _conf(args)
    assert conf["spark.connect.grpc.binding.address"] == "127.0.0.1"
    assert conf["spark.connect.grpc.binding.port"] == "15123"
    assert conf["spark.default.parallelism"] == "2"  # what a Connect client reads for its partitions
    token = (tmp_path / "secrets" / "spark_connect_token").read_text().strip()
    assert len(token) >= 32 and env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] == token
    assert all(token not in a for a in args)  # every local user can read a command line
    assert (tmp_path / "secrets" / "spark_connect_token").stat().st_mode & 0o077 == 0
    assert env["SPARK_CONNECT_MODE"] == "0" and env["SPARK_LOCAL_IP"] == "127.0.0.1"


def test_the_url_names_localhost_so_the_client_sends_its_token_without_tls(tmp_path: Path) -> None:
    assert _settings(tmp_path, spark_connect_port=15999).spark_connect_url == "sc://localhost:15999"


def test_answers_only_while_something_listens(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert warm.answers(_settings(tmp_path, spark_connect_port=port))
    assert not warm.answers(_settings(tmp_path, spark_connect_port=port))


@pytest.mark.parametrize(
    ("values", "asked"),
    [
        ({"warm_spark": False}, None),  # off: runs start their own, as before
        ({"warm_spark": True}, "local[1]"),  # the run asked for another master
        ({"warm_spark": True, "spark_master": "sc://elsewhere:15002"}, None),  # already Connect
    ],
)
def test_a_run_does_not_attach_when(tmp_path: Path, values: dict, asked: str | None) -> None:
    settings = Settings(data_dir=tmp_path, **{"spark_master": "local[2]", **values})
    assert session._warm_session(asked, app_name="t", settings=settings, conf=None) is None


def test_a_run_starts_its_own_spark_when_the_warm_one_does_not_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: refused
        settings = _settings(tmp_path, warm_spark=True, spark_connect_port=port)
        assert session._warm_session("local[2]", app_name="t", settings=settings, conf=None) is None
    assert "nothing answers at sc://localhost" in caplog.text


def test_the_driver_gets_a_heap_that_fits_the_machine_unless_one_is_set(tmp_path: Path) -> None:
    default = session.spark_conf("local[2]", settings=_settings(tmp_path))["spark.driver.memory"]
    megabytes = int(default.removesuffix("m"))
    assert 1024 <= megabytes <= 8192  # Spark's own default, 1g, ran out at 3,000,000 students
    chosen = session.spark_conf("local[2]", settings=_settings(tmp_path, spark_driver_memory="3g"))
    assert chosen["spark.driver.memory"] == "3g"
    args, _ = warm.server_command(_settings(tmp_path, spark_driver_memory="3g"))
    assert "spark.driver.memory=3g" in args
    with pytest.raises(ValueError, match="spark_driver_memory"):
        _settings(tmp_path, spark_driver_memory="lots")


def test_only_the_warm_spark_keeps_the_optimising_compiler(tmp_path: Path) -> None:
    """A run's own JVM stops at C1; the warm Spark's serves many runs, so C2's work pays off there."""
    run = session.spark_conf("local[2]", settings=_settings(tmp_path))
    assert "-XX:TieredStopAtLevel=1" in run["spark.driver.extraJavaOptions"]
    assert "-XX:TieredStopAtLevel=1" in run["spark.executor.extraJavaOptions"]
    args, _ = warm.server_command(_settings(tmp_path))
    assert "TieredStopAtLevel" not in _conf(args)["spark.driver.extraJavaOptions"]


@pytest.mark.spark  # runs Java (`make test` installs it; `make test-fast` needs none)
@pytest.mark.slow
def test_a_run_jvm_compiling_with_c1_only_keeps_the_usual_code_cache(tmp_path: Path) -> None:
    """C1 alone would shrink it to 48 MB, which a long session (the suite's shared one) filled, and
    its JVM died: the options a run's driver gets, read back from this machine's Java."""
    options = session.spark_conf("local[2]", settings=_settings(tmp_path))["spark.driver.extraJavaOptions"]
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    assert java, "no Java (JAVA_HOME or java on PATH), which Spark needs too"
    flags = subprocess.run(
        [java, *options.split(), "-XX:+PrintFlagsFinal", "-version"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    (line,) = (line for line in flags.splitlines() if " ReservedCodeCacheSize " in line)
    assert int(line.split("=")[1].split()[0]) >= 240 << 20, line


@pytest.mark.spark  # needs Java, as above
@pytest.mark.slow
def test_the_server_maps_sparks_class_archive_when_one_is_ready(tmp_path: Path) -> None:
    """As a run's own driver does (`class_archive`): it answers sooner. Turned off, it does not."""
    key = class_archive.installation_key()
    assert key is not None  # Java is installed here
    folder = class_archive.folder(_settings(tmp_path))
    folder.mkdir(parents=True)
    archive = folder / f"{key}-10.jsa"
    archive.write_bytes(b"\0" * 10)  # whole, for its name
    for enabled in (True, False):
        args, _ = warm.server_command(_settings(tmp_path, warm_spark=True, spark_class_archive=enabled))
        conf = _conf(args)
        assert (f"-XX:SharedArchiveFile={archive}" in conf["spark.driver.extraJavaOptions"]) is enabled
