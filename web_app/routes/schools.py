"""The school reference list: public to read (the form suggests schools), admins change it."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

import pyarrow as pa
from fastapi import APIRouter, File, Form, HTTPException, Request, Response, Security, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator

from pipeline_lib.contract.fields import SECTORS, normalize_school_id
from web_app.deps import CsrfPassed, DbDep, SchoolCacheDep, current_user, page_user
from web_app.pages import render
from web_app.problems import problem_responses
from web_app.school_cache import MAX_SCHOOLS
from web_app.security import TokenClaims

router = APIRouter(tags=["schools"])
Admin = Annotated[TokenClaims, Security(current_user, scopes=["admin"])]
# The contract's sectors as a Literal, so the API schema lists them (`enum`) and validation names them.
Sector = Literal[SECTORS]  # type: ignore[valid-type]


class SchoolIn(BaseModel):
    school_id: str = Field(min_length=1, max_length=64, description="normalised: ' 01224 ' becomes '1224'")
    name: str = Field(min_length=1, max_length=200)
    sector: Sector
    size: int = Field(ge=1, le=100_000)

    @field_validator("school_id")
    @classmethod
    def _normalise(cls, value: str) -> str:
        code = normalize_school_id(value)
        if not code or not all(c.isalnum() or c in "-_" for c in code):
            raise ValueError("use letters, digits, - and _ only")
        return code


class SchoolPublic(SchoolIn):
    pass


class ImportReport(BaseModel):
    stored: int
    replaced: int


MAX_PROBLEMS = 20  # reported, after which the check stops reading


def _parse_csv(text: str) -> list[SchoolIn]:
    """Every row checked before anything is stored: an import is all or nothing. Run it in a
    thread (`_parsed`): 5 MB of rows take seconds."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return _check_rows(reader)
    except csv.Error as exc:
        raise HTTPException(422, f"Nothing was imported: line {reader.line_num} is not CSV: {exc}") from None


async def _parsed(text: str) -> list[SchoolIn]:
    return await run_in_threadpool(_parse_csv, text)


def _check_rows(reader: csv.DictReader) -> list[SchoolIn]:
    wanted = set(SchoolIn.model_fields)
    if not reader.fieldnames or set(reader.fieldnames) != wanted:
        raise HTTPException(422, f"The header must be exactly: {', '.join(SchoolIn.model_fields)}")
    schools: list[SchoolIn] = []
    problems: list[str] = []
    for rows, row in enumerate(reader, start=1):
        if rows > MAX_SCHOOLS:
            raise HTTPException(422, f"Nothing was imported: at most {MAX_SCHOOLS} schools per import")
        line = reader.line_num
        values = _values_in(row)
        if values != len(wanted):
            problems.append(f"line {line} has {values} values; the header has {len(wanted)}")
        else:
            try:
                schools.append(SchoolIn.model_validate(row))
            except ValidationError as exc:
                errors = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
                problems.append(f"line {line}: {errors}")
        if len(problems) == MAX_PROBLEMS:
            raise HTTPException(
                422, "Nothing was imported. " + " | ".join(problems) + " | (more problems not checked)"
            )
    if problems:
        raise HTTPException(422, "Nothing was imported. " + " | ".join(problems))
    return schools


def _values_in(row: dict) -> int:
    """A DictReader row's values: those past the header sit under None, missing ones are None."""
    return sum(value is not None for key, value in row.items() if key is not None) + len(row.get(None) or ())


async def _store(db: DbDep, cache: SchoolCacheDep, schools: list[SchoolIn]) -> ImportReport:
    table = pa.Table.from_pylist([s.model_dump() for s in schools])
    try:
        result = await db.write("schools", table, mode="upsert", key="school_id")
    finally:  # even a failed write may have stored part of it
        cache.invalidate()
    return ImportReport(stored=result.inserted, replaced=result.replaced)


async def _all_schools(db: DbDep) -> list[SchoolPublic]:
    docs = await db.list_documents("schools", limit=MAX_SCHOOLS)
    return sorted((SchoolPublic.model_validate(d) for d in docs), key=lambda s: s.school_id)


_PUBLIC_LIST = TypeAdapter(list[SchoolPublic])


def public_json(schools: list[dict]) -> bytes:
    """The list as the API answers it (made once per listing: `SchoolCache.derived`)."""
    return _PUBLIC_LIST.dump_json([SchoolPublic.model_validate(d) for d in schools])


@router.get(
    "/api/v1/schools",
    summary="The known schools",
    response_model=list[SchoolPublic],
    responses=problem_responses(503),
)
async def list_schools(db: DbDep, cache: SchoolCacheDep) -> Response:
    """From the web app's copy, at most a minute old unless an admin changed it here."""
    return Response(await cache.derived(db, public_json), media_type="application/json")


@router.post(
    "/api/v1/schools",
    summary="Add or replace a school",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 413, 422, 503),
)
async def add_school(school: SchoolIn, user: Admin, db: DbDep, cache: SchoolCacheDep) -> ImportReport:
    return await _store(db, cache, [school])


@router.post(
    "/api/v1/schools/bulk",
    summary="Import schools from CSV (all or nothing)",
    responses=problem_responses(
        401, 403, 413, 415, 422, 503, s422="Nothing was imported: a row or the header is not valid"
    ),
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def import_schools(request: Request, user: Admin, db: DbDep, cache: SchoolCacheDep) -> ImportReport:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "text/csv":
        raise HTTPException(415, f"Send text/csv, not {media_type or 'nothing'}")
    try:
        text = (await request.body()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPException(422, "The file is not UTF-8 text") from None
    return await _store(db, cache, await _parsed(text))


PageAdmin = Annotated[TokenClaims, Security(page_user, scopes=["admin"])]


@router.get("/schools", response_class=HTMLResponse, include_in_schema=False)
async def schools_page(
    request: Request, user: PageAdmin, db: DbDep, saved: int | None = None, replaced: int = 0
) -> Response:
    message = f"Saved: {saved} new, {replaced} replaced." if saved is not None else ""
    return await render(request, "schools.html", {"schools": await _all_schools(db), "message": message})


@router.post("/schools", response_class=HTMLResponse, include_in_schema=False)
async def schools_form(
    request: Request,
    user: PageAdmin,
    db: DbDep,
    cache: SchoolCacheDep,
    csrf_ok: CsrfPassed,
    school_id: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    sector: Annotated[str, Form()] = "",
    size: Annotated[str, Form()] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    schools = await _all_schools(db)
    if not csrf_ok:
        return await render(
            request, "schools.html", {"schools": schools, "message": "The form expired: try again."}, 403
        )
    try:
        if file is not None and file.filename:
            parsed = await _parsed((await file.read(5 * 1024 * 1024)).decode("utf-8-sig"))
        else:
            parsed = [SchoolIn(school_id=school_id, name=name, sector=sector, size=size)]  # type: ignore[arg-type]
    except (HTTPException, ValidationError, UnicodeDecodeError) as exc:
        message = exc.detail if isinstance(exc, HTTPException) else str(exc)
        return await render(request, "schools.html", {"schools": schools, "message": message}, 422)
    report = await _store(db, cache, parsed)
    return RedirectResponse(
        f"/schools?saved={report.stored}&replaced={report.replaced}", status.HTTP_303_SEE_OTHER
    )
