"""The public student form: generated from the data contract, works without JavaScript."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pipeline_lib.contract.fields import CONSENT, STUDENT_FIELDS, check_value
from web_app.deps import DbDep
from web_app.pages import CSRF_COOKIE, render
from web_app.security import csrf_valid
from web_app.submissions import MAX_VALUE_CHARS, form_submission_id, raw_record, same_submission

router = APIRouter(include_in_schema=False)
_ALREADY_SENT = (
    "This page was already sent once, with other answers. Your answers below are not stored yet: "
    "check them and send this page to store them as a new submission."
)


async def _school_suggestions(request: Request, db: DbDep) -> list[dict]:
    try:
        return await request.app.state.school_cache.schools(db)
    except Exception:  # suggestions are a convenience: the form works without them
        return []


async def _form_page(
    request: Request, db: DbDep, values: dict, errors: dict, status_code: int = 200, notice: str = ""
) -> Response:
    context = {
        "fields": STUDENT_FIELDS,
        "consent": CONSENT,
        "values": values,
        "errors": errors,
        "schools": await _school_suggestions(request, db),
        "nonce": values.get("nonce") or secrets.token_urlsafe(16),
        "max_chars": MAX_VALUE_CHARS,
        "notice": notice,
    }
    return render(request, "form.html", context, status_code)


@router.get("/", response_class=HTMLResponse)
async def form(request: Request, db: DbDep) -> Response:
    return await _form_page(request, db, {}, {})


@router.post("/", response_class=HTMLResponse)
async def submit(request: Request, db: DbDep) -> Response:
    form_data = await request.form()
    values = {k: v[:MAX_VALUE_CHARS] for k, v in form_data.items() if isinstance(v, str)}
    if not csrf_valid(request.cookies.get(CSRF_COOKIE), values.get("csrf"), request.app.state.jwt_secret):
        notice = "This form expired or was sent from elsewhere. Please check your answers and send it again."
        return await _form_page(request, db, values, {}, status.HTTP_403_FORBIDDEN, notice)
    client = request.client.host if request.client else "unknown"
    limiter = request.app.state.form_limiter
    if not limiter.allow(client):
        notice = f"Too many submissions from your address. Please wait {limiter.retry_after(client)} seconds."
        return await _form_page(request, db, values, {}, status.HTTP_429_TOO_MANY_REQUESTS, notice)
    errors = {f.name: problem for f in STUDENT_FIELDS if (problem := check_value(f, values.get(f.name)))}
    if values.get(CONSENT.name) != "yes":
        errors[CONSENT.name] = "Please tick this box: without your consent nothing can be stored."
    if errors:
        return await _form_page(request, db, values, errors, status.HTTP_422_UNPROCESSABLE_CONTENT)
    # The nonce makes a double click or a resent form store one submission, with one receipt.
    nonce = values.get("nonce") or secrets.token_urlsafe(16)
    answers = {f.name: values.get(f.name, "") for f in STUDENT_FIELDS}
    answers[CONSENT.name] = "yes"
    record = raw_record(answers, source="form", submission_id=form_submission_id(nonce))
    stored = await db.insert_one("raw", record)
    if not stored.inserted and not same_submission(stored.document, record):
        # The page was sent before with other answers (Back on a shared PC): a receipt now would
        # claim answers are stored that are not. The answers come back on a fresh page.
        fresh = {k: v for k, v in values.items() if k != "nonce"}
        return await _form_page(request, db, fresh, {}, status.HTTP_409_CONFLICT, _ALREADY_SENT)
    return RedirectResponse(f"/thanks/{stored.id}", status.HTTP_303_SEE_OTHER)


@router.get("/thanks/{submission_id}", response_class=HTMLResponse)
async def thanks(request: Request, submission_id: str, db: DbDep) -> Response:
    """The receipt, only for a form submission that is stored (a form's id is unguessable, so
    this tells nobody anything they did not send; API and bulk ids can be guessed)."""
    stored = await db.get("raw", submission_id) if len(submission_id) <= 64 else None
    if stored is None or stored.get("source") != "form":
        return render(request, "thanks.html", {"submission_id": None}, status.HTTP_404_NOT_FOUND)
    return render(request, "thanks.html", {"submission_id": submission_id})
