"""Telling people that a run failed: one readable line, a webhook call and an e-mail.

A failed run's error is often a Java stack trace wrapped around a Python one; `headline` finds
the line a person needs (the exception and its message) so every announcement is one line.
Delivery is best effort with short timeouts: an unreachable webhook or mail server is logged
and never changes the run's outcome.
"""

from __future__ import annotations

import logging
import re
import smtplib
import threading
from email.message import EmailMessage
from typing import Any

import httpx

from pipeline_lib.runs import records
from pipeline_lib.runs.records import RunError, RunRecord
from pipeline_lib.settings import Settings

log = logging.getLogger(__name__)

FAILED = ("failed", "timed_out")
MAX_HEADLINE = 300
DELIVERY_TIMEOUT_SECONDS = 10.0  # per connect or read
# In all: a per-read timeout never ends an endpoint that sends a byte at a time, and a delivery
# holds the run's process (with `all`, the runs after it).
DELIVERY_DEADLINE_SECONDS = 20.0
# Runs started by a person at a terminal show their failure there; the rest are announced.
ANNOUNCED_TRIGGERS = frozenset({"scheduler", "cron"})
NOT_RECORDED = "NotRecorded"  # the exception of an announced run the db-api could not record

# `package.module.SomeError: message`: a Python traceback's last line, or a line of a Java
# exception chain (`: org...Exception: ...` under Py4J's first line, `Caused by: ...` below).
_EXCEPTION_LINE = re.compile(
    r"^\s*(?::\s*|Caused by:\s*)?(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)): (.+)$"
)
_JVM_PREFIXES = ("org.", "java.", "javax.", "scala.", "py4j.", "com.")


def headline(error: RunError) -> str:
    """The error as one line: the innermost Python exception and its message where the text is a
    traceback (Spark wraps a worker's in a Java one), else the root cause of a Java exception
    chain (its last `Caused by`), else the first non-empty line."""
    lines = [line.rstrip() for line in error.message.splitlines()]
    python, jvm = [], []
    for line in lines:
        match = _EXCEPTION_LINE.match(line)
        if match:
            qualified = line.lstrip(" \t:").removeprefix("Caused by:").lstrip()
            (jvm if qualified.startswith(_JVM_PREFIXES) else python).append(match.groups())
    if python:
        name, message = python[-1]
    elif jvm:
        name, message = jvm[-1]
    else:
        name, message = error.exception, next((line.strip() for line in lines if line.strip()), "")
    text = f"{name}: {message}" if message else name
    return text if len(text) <= MAX_HEADLINE else text[: MAX_HEADLINE - 1] + "…"


def run_url(settings: Settings, run_id: str) -> str:
    """The run's page where people reach it: under WORKBENCH_PUBLIC_URL behind a proxy (the web
    app's own address is then a loopback or 0.0.0.0 one that no recipient can open)."""
    return f"{(settings.public_url or settings.web_url).rstrip('/')}/runs/{run_id}"


def failure_line(record: RunRecord, settings: Settings) -> str:
    """`FAILED process run <id> (timed_out): <headline> -> <url>`: what a console shows."""
    status = "" if record.status == "failed" else f" ({record.status})"
    why = headline(record.error) if record.error else "no error recorded"
    page = _page(record, settings)
    return f"FAILED {record.notebook} run {record.run_id}{status}: {why}" + (f" -> {page}" if page else "")


def _page(record: RunRecord, settings: Settings) -> str | None:
    """The run's page, if it has one (a run that could not be recorded has none)."""
    if record.error is not None and record.error.exception == NOT_RECORDED:
        return None
    return run_url(settings, record.run_id)


def should_announce(record: RunRecord) -> bool:
    return record.status in FAILED and record.triggered_by in ANNOUNCED_TRIGGERS


def unrecorded(notebooks: list[str], triggered_by: str, reason: str) -> RunRecord:
    """A failed record, never stored, for runs that could not be recorded (the db-api out of reach
    at their start or their end): what is announced in its place, so a scheduled run the db-api
    could not record is not a silent one. Its work may or may not have been done."""
    started = records.now()
    record = RunRecord(
        run_id=records.new_run_id(notebooks[0] if notebooks else "run", started),
        notebook=", ".join(notebooks),
        started_at=started,
        code_version=records.code_version(),
        host=records.host_name(),
        triggered_by=triggered_by,
    )
    message = f"the run could not be recorded (it may not have run, or its result is unknown): {reason}"
    record.finish("failed", error=RunError(exception=NOT_RECORDED, message=message))
    return record


def announce(record: RunRecord, settings: Settings) -> None:
    """Send the configured notifications (webhook, e-mail) for a failed run; never raises."""
    if settings.alert_webhook:
        _deliver("webhook", send_webhook, record, settings)
    if settings.alert_smtp_host and settings.alert_smtp_to:
        _deliver("e-mail", send_email, record, settings)


def _deliver(kind: str, send: Any, record: RunRecord, settings: Settings) -> None:
    """`send` in a thread of its own, waited for at most DELIVERY_DEADLINE_SECONDS; a delivery
    still going then is left to end with the process."""
    failure: list[str] = []

    def deliver() -> None:
        try:
            send(record, settings)
        except Exception as exc:  # an alert that cannot go out must not fail the run a second time
            failure.append(str(exc))

    sending = threading.Thread(target=deliver, name=f"alert-{kind}", daemon=True)
    sending.start()
    sending.join(DELIVERY_DEADLINE_SECONDS)
    if sending.is_alive():
        failure.append(f"no answer within {DELIVERY_DEADLINE_SECONDS:g} s")
    if failure:
        log.warning("failed-run %s not delivered: %s", kind, failure[0], extra={"run_id": record.run_id})


def webhook_payload(record: RunRecord, settings: Settings) -> dict[str, Any]:
    return {
        "event": f"run.{record.status}",
        "summary": failure_line(record, settings),
        "headline": headline(record.error) if record.error else None,
        "url": _page(record, settings),
        "run": record.model_dump(mode="json"),
    }


def send_webhook(record: RunRecord, settings: Settings) -> None:
    assert settings.alert_webhook
    response = httpx.post(
        settings.alert_webhook,
        json=webhook_payload(record, settings),
        timeout=DELIVERY_TIMEOUT_SECONDS,
        follow_redirects=False,
    )
    response.raise_for_status()


def email_message(record: RunRecord, settings: Settings) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = (
        f"[workbench] {record.notebook} run {record.status.replace('_', ' ')}: {record.run_id}"
    )
    message["From"] = settings.alert_smtp_from
    message["To"] = ", ".join(_recipients(settings))
    error = record.error
    details = [
        failure_line(record, settings),
        "",
        f"Notebook:   {record.notebook}",
        f"Run:        {record.run_id} ({record.triggered_by} on {record.host})",
        f"Started:    {record.started_at:%Y-%m-%d %H:%M:%S %Z}",
        f"Status:     {record.status}",
    ]
    if error is not None:
        where = f" in cell {error.cell_index}" if error.cell_index is not None else ""
        details += [f"Error:      {error.exception}{where}", "", error.message[:20_000]]
    if record.output_path:
        details += ["", f"Output notebook: {record.output_path}"]
    message.set_content("\n".join(details) + "\n")
    return message


def _recipients(settings: Settings) -> list[str]:
    return [address.strip() for address in (settings.alert_smtp_to or "").split(",") if address.strip()]


def send_email(record: RunRecord, settings: Settings) -> None:
    assert settings.alert_smtp_host
    with smtplib.SMTP(
        settings.alert_smtp_host, settings.alert_smtp_port, timeout=DELIVERY_TIMEOUT_SECONDS
    ) as smtp:
        if settings.alert_smtp_starttls:
            smtp.starttls()
        if settings.alert_smtp_user and settings.alert_smtp_password is not None:
            smtp.login(settings.alert_smtp_user, settings.alert_smtp_password.get_secret_value())
        smtp.send_message(email_message(record, settings))
