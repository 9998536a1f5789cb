"""Liveness and readiness for process supervisors and load balancers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pipeline_lib.wire.requests import DbApiCallError
from web_app.deps import DbDep
from web_app.problems import problem, problem_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz", summary="The db-api answers", responses=problem_responses(503, s503="db-api unreachable")
)
async def readyz(db: DbDep) -> JSONResponse:
    try:
        await db.count("runs")
    except DbApiCallError as exc:
        return problem(503, "The database service is not reachable", exc.code.name)
    return JSONResponse({"status": "ready"})
