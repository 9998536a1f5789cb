"""Results: the latest processed figures as JSON, never showing a group under k, each with how
old it is and a warning when it is stale or the run that should renew it failed. The pages and
downloads (`result_pages`) are served under this router too."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Security

from pipeline_lib.process.results import PublicResult, ResultSummary, suppress
from pipeline_lib.runs.freshness import Freshness
from web_app.deps import DbDep, SettingsDep, current_user
from web_app.problems import problem_responses
from web_app.routes import result_pages
from web_app.routes.result_data import (
    KEY_PATTERN,
    Unreadable,
    freshness,
    is_analyst,
    read_document,
    read_documents,
)
from web_app.security import TokenClaims

router = APIRouter(tags=["results"])
Reader = Annotated[TokenClaims, Security(current_user, scopes=["results:read"])]


# Freshness is a field of each item rather than a wrapper around the list: clients that read
# `list[ResultSummary]` keep working, and each item can be judged on its own (a key that a later
# run no longer writes grows old while the others stay fresh).
class FreshSummary(ResultSummary):
    """An index entry: the result, and how old its figures are."""

    freshness: Freshness


class FreshResult(PublicResult):
    """One result as anyone may see it, and how old its figures are."""

    freshness: Freshness


@router.get("/api/v1/results", summary="Index of result keys", responses=problem_responses(401, 403, 503))
async def results_index(user: Reader, db: DbDep, settings: SettingsDep) -> list[FreshSummary]:
    documents = await read_documents(db)
    analyst = is_analyst(user)
    fresh = await freshness(db, settings, documents, details=analyst)
    # A reader's entry names the run it shows: that of a held document's published figures.
    shown = [d if analyst else suppress(d, settings.k_min_group) for d in documents]
    return [FreshSummary(**ResultSummary.model_validate(d, from_attributes=True).model_dump(),
                         freshness=fresh[d.key]) for d in shown]  # fmt: skip


@router.get(
    "/api/v1/results/{key}",
    summary="One result, groups under k suppressed",
    responses=problem_responses(401, 403, 404, 422, 503, s404="No such result"),
)
async def result(
    key: Annotated[str, Path(pattern=KEY_PATTERN)],
    user: Reader,
    db: DbDep,
    settings: SettingsDep,
) -> FreshResult:
    try:
        doc = await read_document(db, key)
    except Unreadable:
        raise HTTPException(404, f"Result {key!r} is not in a readable form") from None
    if doc is None:
        raise HTTPException(404, f"No result {key!r}; GET /api/v1/results lists them")
    analyst = is_analyst(user)
    fresh = await freshness(db, settings, [doc], details=analyst)
    public = suppress(doc, settings.k_min_group, analyst=analyst)
    return FreshResult(**public.model_dump(), freshness=fresh[doc.key])


router.include_router(result_pages.router)
