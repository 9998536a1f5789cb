"""The repository's frame stays true: generated code, mirrored pins, the README's commands."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict:
    """pyproject.toml's [project] table."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirement(spec: str) -> tuple[str, str]:
    match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec.strip())
    assert match, spec
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


GENERATED = Path("pipeline_lib", "wire", "proto")
# What grpcio-tools stamps into its output: the grpcio and protobuf versions the code then requires
# at import. They name the generator that ran, not the proto: a patch release of grpcio-tools
# changed them (1.85.1 to 1.85.4) while the code stayed the same.
GRPC_STAMP = re.compile(r"^GRPC_GENERATED_VERSION = '([^']*)'$", re.M)
PROTOBUF_STAMP = re.compile(r"ValidateProtobufRuntimeVersion\(\s*[\w.]+,\s*(\d+),\s*(\d+),\s*(\d+),[^)]*\)")
PROTOBUF_COMMENT = re.compile(r"^# Protobuf Python Version: .*$", re.M)


def _without_stamps(code: str) -> str:
    for stamp in (GRPC_STAMP, PROTOBUF_STAMP, PROTOBUF_COMMENT):
        code = stamp.sub("<version stamp>", code)
    return code


def test_generated_grpc_code_matches_the_proto(tmp_path: Path) -> None:
    proto = GENERATED / "dbapi.proto"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", str(ROOT / proto)],
        check=True,
    )  # fmt: skip
    for name in ("dbapi_pb2.py", "dbapi_pb2.pyi", "dbapi_pb2_grpc.py"):
        fresh = _without_stamps((tmp_path / GENERATED / name).read_text())
        assert fresh == _without_stamps((ROOT / GENERATED / name).read_text()), (
            f"{name} is stale: run `make proto`"
        )


def test_the_generated_code_requires_the_grpcio_and_protobuf_the_project_pins() -> None:
    """So an install at the pinned lower bounds imports it (the stamps are checked at import)."""
    pins = dict(_requirement(s) for s in _project()["dependencies"])
    grpc_stamp = GRPC_STAMP.search((ROOT / GENERATED / "dbapi_pb2_grpc.py").read_text())
    protobuf_stamp = PROTOBUF_STAMP.search((ROOT / GENERATED / "dbapi_pb2.py").read_text())
    assert grpc_stamp and protobuf_stamp, "no version stamp found in the generated code"
    hint = "regenerate with grpcio-tools at the pinned version, or raise the pins in pyproject.toml"
    assert pins["grpcio"] == f">={grpc_stamp.group(1)}", hint
    assert pins["protobuf"] == ">=" + ".".join(protobuf_stamp.groups()), hint


def test_environment_yml_mirrors_the_pyproject_pins() -> None:
    project = _project()
    wanted = dict(_requirement(s) for s in project["dependencies"] + project["optional-dependencies"]["test"])
    listed = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:") :].splitlines():
        match = re.match(r"^  - ([A-Za-z][^#:]*)$", line)
        if match:
            name, spec = _requirement(match.group(1))
            if name not in ("python", "pip"):
                listed[name] = spec
    assert listed == wanted


def test_readme_opens_with_the_two_set_up_commands_and_ci_runs_the_test_one() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "make run" in first_screen and "make test" in first_screen
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.MULTILINE)


def test_notebooks_are_committed_clean() -> None:
    import nbformat

    notebooks = sorted((ROOT / "notebooks").rglob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"


def test_the_clean_notebook_has_its_parameters_cell() -> None:
    import nbformat

    notebook = nbformat.read(ROOT / "notebooks" / "clean.ipynb", as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    from pipeline_lib.runs.parameters import read_notebook

    declared = read_notebook(ROOT / "notebooks" / "clean.ipynb")
    for name in ("run_id", "db_api_address", "spark_master", "batch_size", "limit", "dry_run"):
        assert name in declared


def test_every_console_script_points_at_a_callable() -> None:
    """`[project.scripts]` names `module:function`; a moved module must not leave the command broken."""
    import importlib

    scripts = _project()["scripts"]
    for name, target in scripts.items():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), f"{name} -> {target}"
