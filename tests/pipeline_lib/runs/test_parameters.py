"""Typed notebook parameters: the parameters cell's convention, and `-p` values read and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

from pipeline_lib.runs import executor
from pipeline_lib.runs.parameters import (
    USAGE_ERRORS,
    InvalidParameter,
    Parameter,
    ParametersCellError,
    UnknownParameter,
    check,
    check_namespace,
    from_text,
    parse_cell,
    parse_value,
    read_notebook,
    resolve,
    validate,
)
from pipeline_lib.settings import Settings

NOTEBOOKS = Path(__file__).resolve().parents[3] / "notebooks"

CELL = """\
# Any comment line is fine.
run_id: str | None = None  # default: process-<UTC time> (a = b in a comment is fine)
seed: int = 1  # 0..2_147_483_647: folds, permutations and samples
k_min_group: int | None = None  # 1..: default WORKBENCH_K_MIN_GROUP
share: float = 0.5  # 0.0..1.0
threshold: float = 2  # ..100
dry_run: bool = False  # True: commit nothing
label: str = "all"
engine: str = "auto"  # auto|spark|pandas: which engine
legacy = 3
"""


@pytest.fixture(scope="module")
def declared() -> dict[str, Parameter]:
    return parse_cell(CELL)


def test_annotations_give_types_and_a_leading_range_comment_gives_bounds(declared) -> None:
    assert declared["seed"] == Parameter(
        "seed", "int", low=0, high=2_147_483_647, help="folds, permutations and samples", line=3
    )
    assert declared["k_min_group"] == Parameter(
        "k_min_group", "int", optional=True, low=1, help="default WORKBENCH_K_MIN_GROUP", line=4
    )
    assert (declared["share"].low, declared["share"].high) == (0.0, 1.0)
    assert (declared["threshold"].low, declared["threshold"].high) == (None, 100.0)
    assert declared["run_id"].kind == "str" and declared["run_id"].optional
    assert declared["run_id"].help.startswith("default: process-")
    assert declared["dry_run"] == Parameter("dry_run", "bool", help="True: commit nothing", line=7)
    assert declared["legacy"].kind is None


def test_the_expected_value_is_said_in_words(declared) -> None:
    assert declared["seed"].expected == "an integer from 0 to 2_147_483_647"
    assert declared["k_min_group"].expected == "an integer of at least 1, or none"
    assert declared["threshold"].expected == "a number of at most 100.0"
    assert declared["dry_run"].expected == "true or false"
    assert declared["run_id"].expected == "text, or none"


def test_a_value_that_is_not_of_the_type_names_the_parameter_notebook_and_type(declared) -> None:
    with pytest.raises(InvalidParameter) as refused:
        from_text("process", declared["seed"], "abc")
    assert str(refused.value) == (
        "parameter seed of process must be an integer from 0 to 2_147_483_647, got 'abc'"
    )


def test_a_value_out_of_range_is_refused_with_the_range(declared) -> None:
    with pytest.raises(InvalidParameter, match=r"must be an integer from 0 to 2_147_483_647, got -1$"):
        from_text("process", declared["seed"], "-1")
    with pytest.raises(InvalidParameter, match=r"of at least 1, or none, got 0$"):
        from_text("process", declared["k_min_group"], "0")
    with pytest.raises(InvalidParameter, match=r"from 0.0 to 1.0, got 1.5$"):
        from_text("process", declared["share"], "1.5")


def test_bounds_are_included(declared) -> None:
    assert from_text("p", declared["seed"], "0") == 0
    assert from_text("p", declared["seed"], "2147483647") == 2_147_483_647
    assert from_text("p", declared["share"], "1") == 1.0


def test_a_list_of_choices_bounds_a_str_parameter(declared) -> None:
    engine = declared["engine"]
    assert engine.choices == ("auto", "spark", "pandas") and engine.help == "which engine"
    assert engine.expected == "one of auto, spark, pandas"
    assert from_text("clean", engine, "pandas") == "pandas"
    with pytest.raises(InvalidParameter) as refused:
        from_text("clean", engine, "dask")
    assert str(refused.value) == "parameter engine of clean must be one of auto, spark, pandas, got 'dask'"
    with pytest.raises(ParametersCellError, match="engine must be one of auto, spark, got 'x'"):
        parse_cell('engine: str = "x"  # auto|spark: which engine\n')


@pytest.mark.parametrize("text", ["none", "None", "null"])
def test_none_is_accepted_only_where_declared(declared, text: str) -> None:
    assert from_text("p", declared["k_min_group"], text) is None
    assert from_text("p", declared["run_id"], text) is None
    with pytest.raises(InvalidParameter, match="must be an integer from 0 to 2_147_483_647, got none"):
        from_text("p", declared["seed"], text)


def test_an_int_is_accepted_for_a_float_and_becomes_one(declared) -> None:
    value = from_text("p", declared["threshold"], "7")
    assert value == 7.0 and isinstance(value, float)
    assert check("p", declared["threshold"], 7) == 7.0


@pytest.mark.parametrize("value", [True, False, 1.0, 2.5])
def test_an_int_parameter_refuses_bools_and_floats(declared, value: Any) -> None:
    with pytest.raises(InvalidParameter):
        check("p", declared["seed"], value)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "true"])
def test_a_float_parameter_refuses_non_finite_numbers_and_bools(declared, text: str) -> None:
    with pytest.raises(InvalidParameter, match="parameter threshold of p must be a number"):
        from_text("p", declared["threshold"], text)


def test_a_bool_is_true_or_false_only(declared) -> None:
    assert from_text("p", declared["dry_run"], "TRUE") is True
    assert from_text("p", declared["dry_run"], "false") is False
    for text in ("yes", "1", "none"):
        with pytest.raises(InvalidParameter, match="must be true or false"):
            from_text("p", declared["dry_run"], text)


def test_text_is_kept_as_typed_for_a_str_parameter(declared) -> None:
    assert from_text("p", declared["label"], "007") == "007"
    assert from_text("p", declared["label"], "none") == "none"  # not optional: the word itself
    assert from_text("p", declared["run_id"], "true") == "true"
    with pytest.raises(InvalidParameter, match="must be text, got 7"):
        check("p", declared["label"], 7)


def test_an_unannotated_parameter_takes_what_papermill_would_read(declared) -> None:
    assert from_text("p", declared["legacy"], "12") == 12
    assert from_text("p", declared["legacy"], "x") == "x"


def test_parse_value_reads_like_papermills_cli() -> None:
    assert [parse_value(t) for t in ("true", "False", "none", "null", "12", "1_000", "1.5", "abc")] == [
        True,
        False,
        None,
        None,
        12,
        1000,
        1.5,
        "abc",
    ]


def test_resolve_lists_the_known_parameters_when_a_name_is_unknown(declared) -> None:
    with pytest.raises(UnknownParameter) as refused:
        resolve({"process": declared}, {"seed": "2", "colour": "red"})
    assert str(refused.value) == (
        "process has no parameter colour (its parameters: dry_run, engine, k_min_group, label, legacy, "
        "run_id, seed, share, threshold)"
    )


def test_resolve_gives_each_name_to_the_notebooks_that_declare_it() -> None:
    clean = parse_cell("limit: int = 0  # 0..\nrun_id: str | None = None")
    process = parse_cell("seed: int = 1  # 0..\nrun_id: str | None = None")
    declared = {"clean": clean, "process": process}
    assert resolve(declared, {"limit": "5", "seed": "3"}) == {"limit": 5, "seed": 3}
    with pytest.raises(InvalidParameter, match="parameter seed of process"):
        resolve(declared, {"seed": "-3"})
    with pytest.raises(UnknownParameter, match=r"^clean and process have no parameter k "):
        resolve(declared, {"k": "3"})


def test_the_run_id_is_the_runs_own_and_cannot_be_given(declared) -> None:
    # `-p run_id bogus` stored results naming a run that does not exist, which freshness could not follow.
    with pytest.raises(InvalidParameter, match="run_id is set by the run itself"):
        resolve({"process": declared}, {"run_id": "bogus"})
    with pytest.raises(InvalidParameter, match="run_id is set by the run itself"):
        validate("process", declared, {"run_id": None})


def test_validate_checks_values_a_caller_already_read(declared) -> None:
    assert validate("process", declared, {"seed": 4, "share": 1}) == {"seed": 4, "share": 1.0}
    with pytest.raises(InvalidParameter):
        validate("process", declared, {"seed": "4"})
    with pytest.raises(UnknownParameter, match="process has no parameter x "):
        validate("process", declared, {"x": 1})


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("seed: list[int] = [1]", "line 1: seed: list[int] is not a parameter type"),
        ("seed: Optional[int] = None", "Optional[int] is not a parameter type"),
        ("seed: int | str = 1", "int | str is not a parameter type"),
        ("name: str = 'a'  # 1..3: letters", "only an int or float parameter has a range"),
        ("seed: int = 1  # 0.5..: half", "the bound 0.5 of an int parameter is not an integer"),
        ("seed: int = 5  # 10..1", "empty range 10..1"),
        ("x = 1\nseed: int = 0  # 1..10", "line 2: the default of seed must be an integer from 1 to 10"),
        ("seed: int = None", "the default of seed must be an integer, got none"),
        ("dry_run: bool = 0", "the default of dry_run must be true or false, got 0"),
        ("seed: int = (1", "not valid Python"),
    ],
)
def test_a_cell_that_breaks_the_convention_is_an_error_naming_the_line(source: str, complaint: str) -> None:
    with pytest.raises(ParametersCellError, match=r"^the parameters cell, line") as refused:
        parse_cell(source)
    assert complaint in str(refused.value)


def test_a_comment_that_does_not_start_with_a_range_is_help() -> None:
    declared = parse_cell("n: int = 0  # 0 cleans all\nm: int = 1  # ...and more\nk: int = 2  # 1.. 5")
    assert [declared[name].low for name in "nmk"] == [None, None, 1]
    assert declared["n"].help == "0 cleans all" and declared["k"].help == "5"


def test_an_expression_as_default_is_left_to_python() -> None:
    assert parse_cell("rows: int = 2**20  # 1..").keys() == {"rows"}


def test_every_shipped_notebook_declares_typed_parameters() -> None:
    """Each parameter of every notebook under notebooks/ has a type (and the cell follows the rules)."""
    found = {}
    for path in sorted(NOTEBOOKS.rglob("*.ipynb")):
        declared = read_notebook(path)
        untyped = [name for name, parameter in declared.items() if parameter.kind is None]
        assert not untyped, f"{path}: parameters without a type: {untyped}"
        found[path.stem] = declared
    assert found["process"]["seed"].kind == "int" and found["process"]["seed"].low == 0
    assert found["clean"]["dry_run"].kind == "bool"
    assert found["clean"]["batch_size"].low == 1 and found["process"]["k_min_group"].optional


class _Records:
    """Stands in for the db-api client: a refused run only saves its record."""

    def __init__(self) -> None:
        self.saved: list[dict[str, Any]] = []

    def put_document(self, collection: str, key: str, document: dict[str, Any]) -> None:
        self.saved.append(document)


def test_the_executor_records_a_refused_value_as_a_usage_error_without_starting(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("seed: int = 1  # 0..10", metadata={"tags": ["parameters"]})]
    nbformat.write(notebook, tmp_path / "typed.ipynb")
    settings = Settings(data_dir=tmp_path / "var", notebooks_dir=tmp_path)
    client = _Records()
    record = executor.execute("typed", {"seed": 11}, settings, client)  # type: ignore[arg-type]
    assert record.status == "failed" and record.error is not None
    assert record.error.exception == "InvalidParameter" and record.error.exception in USAGE_ERRORS
    assert record.error.message == "parameter seed of typed must be an integer from 0 to 10, got 11"
    assert record.output_path is None and [d["status"] for d in client.saved] == ["failed"]


def _kernel_namespace(*cells: str) -> dict:
    """The globals an IPython kernel holds after running `cells` in turn (annotations included)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell()
    for cell in cells:
        assert shell.run_cell(cell).success
    return shell.user_ns


DECLARED = (
    "dry_run: bool = True\nk_min_group: int | None = None\nquantile: float = 0.25\nengine: str = 'auto'"
)


def test_values_papermill_injects_are_checked_against_the_annotated_types() -> None:
    check_namespace(_kernel_namespace(DECLARED, "dry_run = False\nk_min_group = None\nquantile = 1"))
    check_namespace(_kernel_namespace(DECLARED, "k_min_group = 7\nengine = 'spark'"))
    with pytest.raises(InvalidParameter) as refused:  # `papermill -p dry_run false`
        check_namespace(_kernel_namespace(DECLARED, 'dry_run = "false"'))
    assert str(refused.value) == (
        "parameter dry_run must be true or false, got 'false' "
        "(papermill reads only True and False as booleans: -p dry_run False)"
    )
    with pytest.raises(InvalidParameter, match="k_min_group must be an integer, or none, got '5'"):
        check_namespace(_kernel_namespace(DECLARED, 'k_min_group = "5"'))
    with pytest.raises(InvalidParameter, match=r"-p dry_run True\)$"):
        check_namespace(_kernel_namespace(DECLARED, 'dry_run = "true"'))
    with pytest.raises(InvalidParameter, match=r"reads only None as none: -p k_min_group None\)$"):
        check_namespace(_kernel_namespace(DECLARED, 'k_min_group = "none"'))
    with pytest.raises(InvalidParameter, match=r"-r engine 20240101 passes it as text\)$"):
        check_namespace(_kernel_namespace(DECLARED, "engine = 20240101"))
    with pytest.raises(InvalidParameter, match="quantile must be a number, got true"):
        check_namespace(_kernel_namespace(DECLARED, "quantile = True"))


def test_names_without_a_checkable_annotation_are_left_alone() -> None:
    namespace = _kernel_namespace("from __future__ import annotations", "seed: int = 1\nrows: list = []")
    check_namespace({**namespace, "rows": "anything"})
    with pytest.raises(InvalidParameter, match="seed must be an integer"):  # a text annotation too
        check_namespace({**namespace, "seed": "1"})
