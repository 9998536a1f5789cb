"""`workbench demo` against a real stack: a db-api on loopback and the web app under uvicorn."""

# The web app's `stack` fixture is imported, so its name as a test argument shadows the import.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner, Result

from pipeline_lib.cli.demo import demo
from pipeline_lib.demo.account import DEMO_USER
from pipeline_lib.demo.population import TEXT_COLUMNS
from pipeline_lib.demo.rows import demo_rows
from pipeline_lib.settings import get_settings
from tests.conftest import TOKEN
from tests.web_app.conftest import PASSWORD, WebStack, stack, web_settings  # noqa: F401 (fixtures)
from tests.wire_servers import free_port
from web_app.submissions import owned_submission_id

RunDemo = Callable[..., Result]
SMALL = ["--students", "400", "--schools", "12", "--dirty", "0.2", "--seed", "3", "--chunk-rows", "150"]


def _app() -> typer.Typer:
    """The command as `workbench` will register it, in an app of its own."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        pass

    app.command("demo")(demo)
    return app


@pytest.fixture
def run_demo(stack: WebStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunDemo]:
    """Runs `demo` with settings pointing at the stack's db-api, as the environment would."""
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WORKBENCH_DB_API_ADDRESS", stack.settings.db_api_address)
    monkeypatch.setenv("WORKBENCH_DB_API_TOKEN", TOKEN)
    get_settings.cache_clear()

    def run(*args: str, url: str | None = None, stdin: str | None = None) -> Result:
        return CliRunner().invoke(_app(), ["demo", *args, "--url", url or stack.url], input=stdin)

    yield run
    get_settings.cache_clear()


def test_demo_stores_every_record_in_raw_and_every_school(stack: WebStack, run_demo: RunDemo) -> None:
    result = run_demo(*SMALL)
    assert result.exit_code == 0, result.output
    _, rows = demo_rows(400, 12, 0.2, 3)
    assert stack.db.count("raw") == len(rows) > 400
    assert stack.db.count("schools") == 12
    assert f"{len(rows):,} stored" in result.stdout and "12 created" in result.stdout


def test_raw_holds_the_records_exactly_as_typed(stack: WebStack, run_demo: RunDemo) -> None:
    assert run_demo(*SMALL).exit_code == 0
    population, rows = demo_rows(400, 12, 0.2, 3)
    raw = stack.db.scan_pandas("raw", arrow_strings=False).set_index("submission_id").sort_index()
    # Bulk ids belong to the account that sent them (the demo's own).
    rows["submission_id"] = [owned_submission_id(DEMO_USER, i) for i in rows["submission_id"]]
    sent = rows.set_index("submission_id").sort_index()
    assert list(raw.index) == list(sent.index)
    for name in TEXT_COLUMNS:
        # A blank CSV value is stored as null: the only change an upload makes.
        expected = sent[name].where(sent[name].fillna("").str.strip() != "", None)
        assert raw[name].where(raw[name].notna(), None).tolist() == expected.tolist(), name
    schools = pd.DataFrame(stack.db.list_documents("schools", limit=100)).sort_values("school_id")
    assert schools["school_id"].tolist() == sorted(population.schools["school_id"])


def test_running_the_same_demo_again_stores_nothing_twice(stack: WebStack, run_demo: RunDemo) -> None:
    first = run_demo(*SMALL)
    again = run_demo(*SMALL)
    assert first.exit_code == 0 and again.exit_code == 0, again.output
    _, rows = demo_rows(400, 12, 0.2, 3)
    assert stack.db.count("raw") == len(rows)
    assert "0 stored" in again.stdout and "0 created, 12 already there" in again.stdout


def test_the_demo_account_is_disabled_after_the_run(stack: WebStack, run_demo: RunDemo) -> None:
    assert run_demo("--students", "20", "--schools", "2").exit_code == 0
    account = stack.db.get_document("users", "demo")
    assert account is not None and account["disabled"] is True
    assert sorted(account["scopes"]) == ["admin", "submit"]
    with stack.client() as client:
        refused = client.post("/api/v1/auth/token", data={"username": "demo", "password": "anything"})
    assert refused.status_code == 401


def test_an_existing_admin_account_can_be_used_instead(stack: WebStack, run_demo: RunDemo) -> None:
    result = run_demo(
        "--students", "20", "--schools", "2", "--user", "admin", "--password-stdin", stdin=PASSWORD
    )
    assert result.exit_code == 0, result.output
    assert stack.db.get_document("users", "demo") is None
    assert stack.db.count("raw") >= 20


def test_an_account_without_admin_is_a_clear_error(stack: WebStack, run_demo: RunDemo) -> None:
    result = run_demo("--students", "20", "--user", "submitter", "--password-stdin", stdin=PASSWORD)
    assert result.exit_code == 1
    assert "needs admin" in result.stderr
    assert stack.db.count("raw") == 0


def test_an_unreachable_url_is_a_clear_error(stack: WebStack, run_demo: RunDemo) -> None:
    result = run_demo("--students", "20", url=f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 1
    assert "cannot reach the web app" in result.stderr and "workbench up" in result.stderr
    assert stack.db.get_document("users", "demo") is None


@pytest.mark.parametrize("where", ["grpc port", "wrong path"])
def test_a_server_that_is_not_the_web_app_is_a_clear_error(
    stack: WebStack, run_demo: RunDemo, where: str
) -> None:
    url = f"http://127.0.0.1:{stack.db_api.port}" if where == "grpc port" else f"{stack.url}/nothing"
    result = run_demo("--students", "20", url=url)
    assert result.exit_code == 1
    assert "is --url the workbench web app?" in result.stderr
    assert stack.db.count("raw") == 0


def test_a_db_api_that_refuses_our_token_is_a_clear_error(
    stack: WebStack, run_demo: RunDemo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_DB_API_TOKEN", "not-the-token")
    get_settings.cache_clear()
    result = run_demo("--students", "20")
    assert result.exit_code == 1
    assert "cannot set up the 'demo' account" in result.stderr and "--user" in result.stderr
    assert stack.db.count("raw") == 0
