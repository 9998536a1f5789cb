"""`workbench users disable|enable|scopes|remove`, and `add` on an existing account, run as a user
runs them: real processes against a real db-api. One test disables a user on a live web app and
watches their sign-in and their session end."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.users import hash_password, verify_password
from tests.conftest import TOKEN
from tests.web_app.conftest import PASSWORD, WebStack, stack, web_settings  # noqa: F401 (fixtures)

WORKBENCH = [sys.executable, "-m", "pipeline_lib.cli"]
_HASH = hash_password(PASSWORD)  # hashing is slow on purpose: one hash for every account seeded here


def _env(data_dir: Path, db_api_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    return {
        **env,
        "WORKBENCH_DATA_DIR": str(data_dir),
        "WORKBENCH_DB_API_ADDRESS": f"127.0.0.1:{db_api_port}",
        "WORKBENCH_DB_API_TOKEN": TOKEN,
    }


@pytest.fixture
def env(sqlite_db_api: RunningServer, tmp_path: Path) -> dict[str, str]:
    return _env(tmp_path, sqlite_db_api.port)


def _users(env: dict[str, str], *args: str, answer: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*WORKBENCH, "users", *args], env=env, input=answer, capture_output=True, text=True, timeout=60
    )


def _seed(db: DbApiClient, name: str, scopes: list[str], *, disabled: bool = False) -> dict:
    user = {"scopes": scopes, "password_hash": _HASH, "disabled": disabled}
    db.put_document("users", name, user)
    return user


def _stored(db: DbApiClient, name: str) -> dict:
    user = db.get_document("users", name)
    assert user is not None, f"user {name!r} is stored"
    return {k: v for k, v in user.items() if k != "_id"}


@pytest.mark.parametrize("command", ["disable", "enable", "scopes", "remove"])
def test_every_new_users_command_has_help(command: str, tmp_path: Path) -> None:
    result = _users(_env(tmp_path, 1), command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_disable_keeps_the_hash_and_scopes_and_list_shows_the_user_disabled(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    before = _seed(sqlite_client, "ada", ["admin", "analyst"])
    result = _users(env, "disable", "ada")
    assert result.returncode == 0, result.stderr
    assert "Disabled user 'ada'" in result.stdout and "5 seconds" in result.stdout
    assert _stored(sqlite_client, "ada") == {**before, "disabled": True}
    assert "ada: admin, analyst (disabled)" in _users(env, "list").stdout


def test_enable_lets_a_disabled_user_back_keeping_the_hash_and_scopes(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    before = _seed(sqlite_client, "ada", ["results:read"], disabled=True)
    result = _users(env, "enable", "ada")
    assert result.returncode == 0, result.stderr
    assert "Enabled user 'ada'" in result.stdout
    assert _stored(sqlite_client, "ada") == {**before, "disabled": False}
    listed = _users(env, "list").stdout
    assert "ada: results:read" in listed and "(disabled)" not in listed


def test_scopes_replaces_the_scopes_keeping_the_hash_and_the_disabled_flag(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    before = _seed(sqlite_client, "ada", ["admin", "analyst"], disabled=True)
    result = _users(env, "scopes", "ada", "--scope", "submit", "--scope", "results:read", "--scope", "submit")
    assert result.returncode == 0, result.stderr
    assert "results:read, submit" in result.stdout and "(still disabled)" in result.stdout
    assert _stored(sqlite_client, "ada") == {**before, "scopes": ["results:read", "submit"]}


def test_scopes_refuses_an_unknown_scope_and_changes_nothing(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    before = _seed(sqlite_client, "ada", ["analyst"])
    result = _users(env, "scopes", "ada", "--scope", "root")
    assert result.returncode == 2 and "unknown scope" in result.stderr
    assert _stored(sqlite_client, "ada") == before


def test_remove_with_yes_deletes_the_user(env: dict[str, str], sqlite_client: DbApiClient) -> None:
    _seed(sqlite_client, "ada", ["analyst"])
    _seed(sqlite_client, "bob", ["submit"])
    result = _users(env, "remove", "ada", "--yes")
    assert result.returncode == 0, result.stderr
    assert "Removed user 'ada'" in result.stdout
    assert sqlite_client.get_document("users", "ada") is None
    assert sqlite_client.get_document("users", "bob") is not None


def test_remove_answered_no_keeps_the_user(env: dict[str, str], sqlite_client: DbApiClient) -> None:
    before = _seed(sqlite_client, "ada", ["analyst"])
    result = _users(env, "remove", "ada", answer="n\n")
    assert "Remove user 'ada'" in result.stdout  # the question was asked
    assert result.returncode == 1 and "nothing removed" in result.stderr.lower()
    assert _stored(sqlite_client, "ada") == before


def test_remove_answered_yes_deletes_the_user(env: dict[str, str], sqlite_client: DbApiClient) -> None:
    _seed(sqlite_client, "ada", ["analyst"])
    result = _users(env, "remove", "ada", answer="y\n")
    assert result.returncode == 0, result.stderr
    assert sqlite_client.get_document("users", "ada") is None


@pytest.mark.parametrize(
    "args",
    [
        ["disable", "nobody"],
        ["enable", "nobody"],
        ["scopes", "nobody", "--scope", "submit"],
        ["remove", "nobody", "--yes"],
        ["remove", "nobody"],
    ],
    ids=["disable", "enable", "scopes", "remove --yes", "remove"],
)
def test_an_unknown_user_exits_1_with_a_clear_message(
    args: list[str], env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    _seed(sqlite_client, "ada", ["analyst"])
    result = _users(env, *args, answer="y\n")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "error: no user 'nobody'" in result.stderr
    assert "Traceback" not in result.stderr
    assert sqlite_client.get_document("users", "nobody") is None


def test_add_on_a_disabled_user_changes_password_and_scopes_but_keeps_it_disabled(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    _seed(sqlite_client, "ada", ["admin"], disabled=True)
    result = _users(env, "add", "ada", "--scope", "submit", "--password-stdin", answer="a-new-password\n")
    assert result.returncode == 0, result.stderr
    assert "Updated user 'ada'" in result.stdout and "(still disabled)" in result.stdout
    user = _stored(sqlite_client, "ada")
    assert user["disabled"] is True and user["scopes"] == ["submit"]
    assert verify_password("a-new-password", user["password_hash"])


def test_a_user_disabled_with_the_cli_can_neither_sign_in_nor_keep_their_session(
    stack: WebStack,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """On a web app with its real account cache (5 s): sign-in is refused at once, and a session
    and a token already held stop working within 5 seconds."""
    with stack.client() as http:
        page = http.get("/login")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        data = {"username": "reader", "password": PASSWORD, "csrf": csrf, "next": "/results"}
        assert http.post("/login", data=data).status_code == 303
        assert http.get("/results").status_code == 200
        bearer = stack.auth("reader")
        assert http.get("/api/v1/results", headers=bearer).status_code == 200

        disabled = _users(_env(tmp_path, stack.db_api.port), "disable", "reader")
        assert disabled.returncode == 0, disabled.stderr
        done = time.monotonic()

        signing_in = http.post(
            "/api/v1/auth/token", data={"username": "reader", "password": PASSWORD, "scope": ""}
        )
        assert signing_in.status_code == 401
        while (page_status := http.get("/results").status_code) == 200 and time.monotonic() < done + 6:
            time.sleep(0.25)
        assert page_status == 303, "the session still works 6 s after the user was disabled"
        assert http.get("/results").headers["location"].startswith("/login")
        assert http.get("/api/v1/results", headers=bearer).status_code == 401


def _started(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*WORKBENCH, "users", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_change_waits_for_another_change_of_the_same_account(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    """Another admin's `scopes` read bob's account, then this `disable` ran, then the `scopes` wrote
    the account as it had read it plus its scopes: bob was enabled again, the disable lost."""
    _seed(sqlite_client, "bob", ["submit"])
    assert sqlite_client.acquire_lease("user:bob", "another admin", 30).acquired
    read_before = _stored(sqlite_client, "bob")  # the other change's read
    disabling = _started(env, "disable", "bob")
    with contextlib.suppress(subprocess.TimeoutExpired):
        disabling.wait(3)  # it waits for the other change (it ran at once, before)
    sqlite_client.put_document("users", "bob", {**read_before, "scopes": ["analyst", "submit"]})
    assert sqlite_client.release_lease("user:bob", "another admin")
    _, err = disabling.communicate(timeout=60)
    assert disabling.returncode == 0, err
    assert _stored(sqlite_client, "bob") == {**read_before, "scopes": ["analyst", "submit"], "disabled": True}


@pytest.mark.slow
def test_a_change_gives_up_when_another_holds_the_account_too_long(
    env: dict[str, str], sqlite_client: DbApiClient
) -> None:
    before = _seed(sqlite_client, "bob", ["submit"])
    assert sqlite_client.acquire_lease("user:bob", "another admin", 60).acquired
    refused = _users(env, "scopes", "bob", "--scope", "admin")
    assert refused.returncode == 1, refused.stderr
    assert "another change of user 'bob' is under way (another admin)" in refused.stderr
    assert _stored(sqlite_client, "bob") == before
