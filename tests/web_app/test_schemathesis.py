"""Property-based tests of the API against its own OpenAPI schema (schemathesis).

The schema is the one the live app serves at /openapi.json. Every operation is called with
generated requests, valid and invalid, as admin (who holds every scope) so that protected routes
are exercised past their auth check. Every response must not be a 5xx, must have a documented
status and content type, and must match the schema documented for that status.

Error statuses are declared by the routes as RFC 9457 problems (`application/problem+json`), so
a status or body the routes do not declare fails the checks.

schemathesis' pytest loader (`schemathesis.pytest.from_fixture`) does not work with pytest 9 (it
sets `node._nodeid`), and `schema.parametrize()` needs the schema at import time while the server
exists only inside the `stack` fixture; so each operation gets a plain parametrized test that
drives `operation.as_strategy()` with Hypothesis.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.web_app.conftest import WebStack, settings_for
from web_app.main import create_app

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25
PROBLEM_JSON = "application/problem+json"

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schemathesis.check
def problem_status_matches(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Any
) -> None:
    """An error's problem body names the status it was sent with."""
    if response.status_code >= 400 and response.headers.get("content-type", [""])[0] == PROBLEM_JSON:
        body = response.json()
        assert body.get("status") == response.status_code, f"problem says {body.get('status')}"


def _app_schema() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return create_app(settings_for(Path(tmp), 1)).openapi()


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the app's schema, read at collection time."""
    spec = _app_schema()
    return [(method.upper(), path) for path, ops in spec["paths"].items() for method in ops]


def _has_inputs(operation: schemathesis.APIOperation) -> bool:
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody"))


@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: v)
def test_operation_conforms_to_schema(stack: WebStack, method: str, path: str) -> None:
    admin = stack.auth("admin")
    served = httpx.get(f"{stack.url}/openapi.json", timeout=30).raise_for_status().json()
    config = schemathesis.Config.from_dict({"base-url": stack.url})
    schema = schemathesis.openapi.from_dict(served, config=config)
    operation = schema[path][method]
    modes = [schemathesis.GenerationMode.POSITIVE]
    if _has_inputs(operation):  # with nothing to send, nothing can be sent wrong
        modes.append(schemathesis.GenerationMode.NEGATIVE)

    for mode in modes:
        strategy = operation.as_strategy(mode, headers=admin)

        @given(case=strategy)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers=admin, checks=CHECKS, additional_checks=[problem_status_matches], timeout=30
            )

        check()


# Regressions found by the fuzzing above: deterministic, so they hold once the bug is fixed.

_BAD_CSV = {
    "schools-lone-cr": ("/api/v1/schools/bulk", b"school_id,name,sector,size\n1224,North\rHigh,public,300\n"),
    "schools-huge-field": (
        "/api/v1/schools/bulk",
        b"school_id,name,sector,size\n1224," + b"x" * 200_000 + b",public,300\n",
    ),
    "submissions-lone-cr": ("/api/v1/submissions/bulk", b"consent,school_id\nyes,12\r24\n"),
    "submissions-lone-cr-header": ("/api/v1/submissions/bulk", b"consent,school\rid\nyes,1224\n"),
    "submissions-huge-field": (
        "/api/v1/submissions/bulk",
        b"consent,school_id\nyes," + b"x" * 200_000 + b"\n",
    ),
}


@pytest.mark.parametrize(("path", "body"), list(_BAD_CSV.values()), ids=list(_BAD_CSV))
def test_unreadable_csv_is_refused_not_a_500(stack: WebStack, path: str, body: bytes) -> None:
    headers = {**stack.auth("admin"), "Content-Type": "text/csv"}
    with stack.client() as client:
        response = client.post(path, content=body, headers=headers)
    assert response.status_code == 422 or (response.status_code == 200 and response.json()["refused"]), (
        response.status_code,
        response.text[:300],
    )
    assert stack.db.count("schools") == 0
