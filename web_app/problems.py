"""Errors as RFC 9457 problem details, and the db-api's failures as HTTP statuses a client can act on."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from limits.errors import StorageError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline_lib.wire.errors import streams_busy
from pipeline_lib.wire.requests import DbApiCallError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """An error as RFC 9457 problem details; a 422 from validation adds `errors`."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


_DESCRIPTIONS = {
    400: "The body cannot be read as JSON",
    401: "Missing, expired or invalid access token",
    403: "The token lacks a scope this needs",
    404: "Not found",
    408: "The request body stalled and was cut off",
    413: "The request body is too large",
    415: "The body is not of a media type this takes",
    422: "The request is not valid",
    429: "Too many requests; try again after Retry-After seconds",
    503: "The database service is unavailable; try again shortly",
}


def problem_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route's error statuses, each an `application/problem+json` body;
    `descriptions` overrides the default text by status (`s404="No such result"`)."""
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": descriptions.get(f"s{status}", _DESCRIPTIONS[status]),
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }


# db-api status -> (HTTP status, title)
_DB_STATUS = {
    grpc.StatusCode.UNAVAILABLE: (503, "The database service is unavailable; try again shortly"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (503, "The database service did not answer in time; try again"),
    grpc.StatusCode.INVALID_ARGUMENT: (422, "The database refused the data"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (413, "The data is too large"),
    grpc.StatusCode.UNAUTHENTICATED: (503, "The web app is not allowed to reach the database"),
}


def problem(status: int, title: str, detail: str = "", **extra: object) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, **extra}
    if detail:
        body["detail"] = detail
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(DbApiCallError)
    async def db_api_failed(request: Request, exc: DbApiCallError) -> JSONResponse:
        status, title = _DB_STATUS.get(exc.code, (502, "The database service failed"))
        if exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED and streams_busy(exc.details):
            status, title = 503, "The database service is busy; try again shortly"
        elif exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED and request.method in ("GET", "HEAD"):
            # A read sends no data: what is too large is what is stored, not the request.
            status, title = 502, "The stored data is too large to send at once"
        log.warning("db-api call failed", extra={"path": request.url.path, "code": exc.code.name})
        told = status in (413, 422) or (status == 502 and exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED)
        detail = exc.details if told else ""
        return problem(status, title, detail)

    @app.exception_handler(StorageError)
    async def limits_failed(request: Request, exc: StorageError) -> JSONResponse:
        # The shared storage of rate limits and sign-outs (WORKBENCH_LIMITS_URI or the MongoDB):
        # without it no post can be counted nor a session checked, so nothing is let through.
        log.warning(
            "limits storage failed",
            extra={"path": request.url.path, "error": type(exc.storage_error).__name__},
        )
        response = problem(503, "The web app's shared counters are unavailable; try again in a moment")
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(exc.status_code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return problem(422, "The request is not valid", errors=errors)
