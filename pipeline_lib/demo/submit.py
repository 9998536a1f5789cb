"""The REST client that sends demo data to a running web app: sign in (OAuth2 password flow),
import the schools, then upload the students as CSV in chunks.

Every row carries a `submission_id` derived from the demo's arguments, so a chunk retried
after a dropped connection, or a whole demo run again, stores nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd

from pipeline_lib.demo.population import TEXT_COLUMNS

SCHOOL_COLUMNS = ("school_id", "name", "sector", "size")
_RETRY_STATUSES = frozenset({502, 503, 504})


class DemoSubmitError(RuntimeError):
    """The web app cannot be reached or refused a step; the message says what to do."""


class Unreachable(DemoSubmitError):
    """Nothing answers at the address."""


@dataclass
class UploadTotals:
    """What the web app reported for all chunks together."""

    received: int = 0
    stored: int = 0
    already_stored: int = 0
    refused: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, report: dict) -> None:
        self.received += int(report["received"])
        self.stored += int(report["stored"])
        self.already_stored += int(report["already_stored"])
        self.refused += int(report["refused"])
        self.problems.extend(report.get("problems", [])[: max(0, 20 - len(self.problems))])


def _detail(response: httpx.Response) -> str:
    """The server's own words: problem details' `detail` or `title`, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:500]
    return str(body)[:200]


def _transport_error(url: str, exc: httpx.TransportError) -> DemoSubmitError:
    what = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return Unreachable(
            f"cannot reach the web app at {url} ({what}). Is it running? Start it with `workbench up`."
        )
    return DemoSubmitError(f"the server at {url} did not answer as an HTTP server should ({what})")


class WorkbenchApi(AbstractContextManager["WorkbenchApi"]):
    """A signed-in session with the web app's JSON API."""

    def __init__(self, url: str, *, timeout: float = 120.0, retries: int = 3) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, *, retry: bool = False, **kwargs: Any) -> httpx.Response:
        """One call; with `retry`, transient failures (connection lost, 502-504) are tried again,
        which is safe only for requests the server applies idempotently."""
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt + 1 < attempts:
                    time.sleep(2**attempt)
                    continue
                raise _transport_error(self.url, exc) from None
            if response.status_code in _RETRY_STATUSES and attempt + 1 < attempts:
                time.sleep(2**attempt)
                continue
            if response.status_code >= 400:
                raise DemoSubmitError(
                    f"{method} {self.url}{path} answered {response.status_code}: {_detail(response)}"
                )
            return response
        raise AssertionError("unreachable")

    def check(self) -> None:
        """Fail early, with a clear message, if `url` is not a running workbench web app."""
        try:
            response = self._request("GET", "/healthz")
        except Unreachable:
            raise
        except DemoSubmitError as exc:
            raise DemoSubmitError(f"{exc} (is --url the workbench web app?)") from None
        try:
            healthy = response.json() == {"status": "ok"}
        except ValueError:
            healthy = False
        if not healthy:
            raise DemoSubmitError(
                f"{self.url} answered /healthz with {response.text[:100]!r}: it is not the workbench web app"
            )

    def login(self, username: str, password: str, scopes: list[str]) -> None:
        data = {"username": username, "password": password, "scope": " ".join(scopes)}
        try:
            response = self._request("POST", "/api/v1/auth/token", data=data)
        except DemoSubmitError as exc:
            raise DemoSubmitError(f"signing in as {username!r} failed: {exc}") from None
        granted = response.json().get("scopes", [])
        if "admin" not in granted:  # admin holds every scope; importing schools needs it
            raise DemoSubmitError(
                f"the account {username!r} has the scopes {granted}: the demo needs admin to import schools"
            )
        self._http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def import_schools(self, schools: pd.DataFrame) -> dict:
        """Upserts the schools (new ones `stored`, existing ones `replaced`)."""
        body = schools.loc[:, list(SCHOOL_COLUMNS)].to_csv(index=False, lineterminator="\n")
        headers = {"Content-Type": "text/csv"}
        return self._request("POST", "/api/v1/schools/bulk", retry=True, content=body, headers=headers).json()

    def submit_rows(
        self,
        rows: pd.DataFrame,
        *,
        chunk_rows: int = 2000,
        on_chunk: Callable[[int], None] | None = None,
    ) -> UploadTotals:
        """Uploads the contract columns and `submission_id` of `rows`, `chunk_rows` per request;
        `on_chunk` hears how many rows each finished chunk held."""
        columns = [*TEXT_COLUMNS, "submission_id"]
        totals = UploadTotals()
        for start in range(0, len(rows), chunk_rows):
            chunk = rows.iloc[start : start + chunk_rows]
            body = chunk.loc[:, columns].to_csv(index=False, lineterminator="\n").encode("utf-8")
            headers = {"Content-Type": "text/csv; charset=utf-8"}
            response = self._request(
                "POST", "/api/v1/submissions/bulk", retry=True, content=body, headers=headers
            )
            totals.add(response.json())
            if on_chunk is not None:
                on_chunk(len(chunk))
        return totals
