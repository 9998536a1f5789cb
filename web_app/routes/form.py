"""The public student form: generated from the data contract, works without JavaScript."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.contract.collections import LATER_HOMES, RAW
from pipeline_lib.contract.fields import CONSENT, STUDENT_FIELDS, check_value
from pipeline_lib.wire.requests import DbApiCallError
from web_app.deps import ClientHostDep, CsrfPassed, DbDep, FormLimiterDep, SchoolCacheDep
from web_app.pages import render
from web_app.school_cache import SchoolCache
from web_app.submissions import (
    MAX_VALUE_CHARS,
    form_submission_id,
    raw_record,
    same_submission,
    unconfirmed,
)

router = APIRouter(include_in_schema=False)
_ALREADY_SENT = (
    "This page was already sent once, with other answers. Your answers below are not stored yet: "
    "check them and send this page to store them as a new submission."
)
_NOT_CONFIRMED = (
    "We could not confirm that your answers were stored: the database is busy or unreachable. "
    "Please send this page again in a moment; your answers are stored only once."
)


def school_options(schools: list[dict]) -> Markup:
    """The form's suggestions for the school code, one `<option>` per school, escaped (made once
    per listing: `SchoolCache.derived`)."""
    return Markup("").join(
        Markup('<option value="{}">{}</option>').format(s.get("school_id") or "", s.get("name") or "")
        for s in schools
    )


@dataclass(frozen=True)
class FormPage:
    """The form page of one request, shown again with the answers sent, their errors, a notice."""

    request: Request
    db: AsyncDbApiClient
    cache: SchoolCache

    async def _school_suggestions(self) -> Markup:
        try:
            return await self.cache.derived(self.db, school_options)
        except Exception:  # suggestions are a convenience: the form works without them
            return Markup("")

    async def show(self, values: dict, errors: dict, status_code: int = 200, notice: str = "") -> Response:
        context = {
            "fields": STUDENT_FIELDS,
            "consent": CONSENT,
            "values": values,
            "errors": errors,
            "school_options": await self._school_suggestions(),
            "nonce": values.get("nonce") or secrets.token_urlsafe(16),
            "max_chars": MAX_VALUE_CHARS,
            "notice": notice,
        }
        return await render(self.request, "form.html", context, status_code)


async def _form_page(request: Request, db: DbDep, cache: SchoolCacheDep) -> FormPage:
    return FormPage(request, db, cache)


FormPageDep = Annotated[FormPage, Depends(_form_page)]


@router.get("/", response_class=HTMLResponse)
async def form(page: FormPageDep) -> Response:
    return await page.show({}, {})


@router.post("/", response_class=HTMLResponse)
async def submit(
    request: Request,
    db: DbDep,
    page: FormPageDep,
    csrf_ok: CsrfPassed,
    limiter: FormLimiterDep,
    client: ClientHostDep,
) -> Response:
    form_data = await request.form()
    values = {k: v[:MAX_VALUE_CHARS] for k, v in form_data.items() if isinstance(v, str)}
    if not csrf_ok:
        notice = "This form expired or was sent from elsewhere. Please check your answers and send it again."
        return await page.show(values, {}, status.HTTP_403_FORBIDDEN, notice)
    if not await limiter.allow(client):
        wait = await limiter.retry_after(client)
        notice = f"Too many submissions from your address. Please wait {wait} seconds."
        response = await page.show(values, {}, status.HTTP_429_TOO_MANY_REQUESTS, notice)
        response.headers["Retry-After"] = str(wait)  # as every other 429 here: for scripts and proxies
        return response
    errors = {f.name: problem for f in STUDENT_FIELDS if (problem := check_value(f, values.get(f.name)))}
    if values.get(CONSENT.name) != "yes":
        errors[CONSENT.name] = "Please tick this box: without your consent nothing can be stored."
    if errors:
        return await page.show(values, errors, status.HTTP_422_UNPROCESSABLE_CONTENT)
    # The nonce makes a double click or a resent form store one submission, with one receipt.
    nonce = values.get("nonce") or secrets.token_urlsafe(16)
    answers = {f.name: values.get(f.name, "") for f in STUDENT_FIELDS}
    answers[CONSENT.name] = "yes"
    record = raw_record(answers, source="form", submission_id=form_submission_id(nonce))
    try:
        stored = await db.insert_one("raw", record)
    except DbApiCallError as exc:
        if not unconfirmed(exc):
            raise
        # The same nonce goes back on the page: sending it again stores these answers once.
        page_values = {**values, "nonce": nonce}
        return await page.show(page_values, {}, status.HTTP_503_SERVICE_UNAVAILABLE, _NOT_CONFIRMED)
    if not stored.inserted and not same_submission(stored.document, record):
        # The page was sent before with other answers (Back on a shared PC): a receipt now would
        # claim answers are stored that are not. The answers come back on a fresh page.
        fresh = {k: v for k, v in values.items() if k != "nonce"}
        return await page.show(fresh, {}, status.HTTP_409_CONFLICT, _ALREADY_SENT)
    return RedirectResponse(f"/thanks/{stored.id}", status.HTTP_303_SEE_OTHER)


async def _received(db: AsyncDbApiClient, submission_id: str) -> dict | None:
    """The record received under this id: in raw, or where the clean has put it since."""
    for collection in (RAW, *LATER_HOMES[RAW]):
        if (found := await db.get(collection, submission_id)) is not None:
            return found
    return None


@router.get("/thanks/{submission_id}", response_class=HTMLResponse)
async def thanks(request: Request, submission_id: str, db: DbDep) -> Response:
    """The receipt, only for a form submission that is stored (a form's id is unguessable, so
    this tells nobody anything they did not send; API and bulk ids can be guessed)."""
    stored = await _received(db, submission_id) if len(submission_id) <= 64 else None
    if stored is None or stored.get("source") != "form":
        return await render(request, "thanks.html", {"submission_id": None}, status.HTTP_404_NOT_FOUND)
    return await render(request, "thanks.html", {"submission_id": submission_id})
