"""The school list is cached in the web app (issue 12): anonymous pages do not each cost the db-api
a listing of up to 10,000 schools, and an admin's change through the web app shows at once.

Listings are counted where they are served: at the real db-api's store, behind gRPC. The cache's
own rules (time to live, the db-api away) are tested on it directly, with a real db-api and a clock
the test moves.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from db_api.server import RunningServer
from db_api.store.base import ScanSpec, Wanted
from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.wire.requests import DbApiCallError
from tests.conftest import TOKEN
from tests.web_app.conftest import WebStack
from web_app.school_cache import SchoolCache

SCHOOLS = [
    {"school_id": "1224", "name": "Hillside High", "sector": "public", "size": 842},
    {"school_id": "1288", "name": "St Mary's", "sector": "catholic", "size": 630},
]


@pytest.fixture
def school_listings(stack: WebStack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """One entry per listing of `schools` the db-api serves (its store's scans of the collection)."""
    stack.db.write("schools", pa.Table.from_pylist(SCHOOLS), mode="upsert", key="school_id")
    listings: list[str] = []
    store = stack.db_api.store
    scan = store.scan

    def counted_scan(collection: str, spec: ScanSpec, wanted: Wanted | None = None) -> Iterator[list[dict]]:
        if collection == "schools":
            listings.append(collection)
        return scan(collection, spec, wanted)

    monkeypatch.setattr(store, "scan", counted_scan)
    return listings


def test_many_form_pages_and_school_lists_cost_one_db_api_listing(
    stack: WebStack, school_listings: list[str]
) -> None:
    with stack.client() as http:
        pages = [http.get("/") for _ in range(30)]
        lists = [http.get("/api/v1/schools") for _ in range(10)]
    assert all(page.status_code == 200 and "Hillside High" in page.text for page in pages)
    assert all([s["school_id"] for s in r.json()] == ["1224", "1288"] for r in lists)
    assert len(school_listings) == 1


def test_simultaneous_first_pages_share_one_db_api_listing(
    stack: WebStack, school_listings: list[str]
) -> None:
    def open_form(_: int) -> int:
        with stack.client() as http:
            return http.get("/").status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(open_form, range(32)))
    assert statuses == [200] * 32
    assert len(school_listings) == 1


@pytest.mark.parametrize("how", ["add", "import"])
def test_a_school_an_admin_adds_shows_at_once(stack: WebStack, school_listings: list[str], how: str) -> None:
    headers = stack.auth("admin")
    with stack.client() as http:
        assert "Lakeside College" not in http.get("/").text
        if how == "add":
            school = {"school_id": "1301", "name": "Lakeside College", "sector": "private", "size": 410}
            response = http.post("/api/v1/schools", json=school, headers=headers)
        else:
            csv = "school_id,name,sector,size\n1301,Lakeside College,private,410\n"
            response = http.post(
                "/api/v1/schools/bulk", content=csv, headers={**headers, "Content-Type": "text/csv"}
            )
        assert response.status_code in (200, 201), response.text
        page = http.get("/").text
        listed = [s["school_id"] for s in http.get("/api/v1/schools").json()]
    assert "Lakeside College" in page
    assert listed == ["1224", "1288", "1301"]


# -- the cache on its own, with a real db-api and a clock the test moves ---------------------------

LAKESIDE = {"school_id": "1301", "name": "Lakeside College", "sector": "private", "size": 410}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def aio_db(sqlite_db_api: RunningServer, sqlite_client: DbApiClient) -> AsyncIterator[AsyncDbApiClient]:
    sqlite_client.write("schools", pa.Table.from_pylist(SCHOOLS), mode="upsert", key="school_id")
    client = AsyncDbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN, timeout=2.0)
    yield client
    await client.close()


def _ids(schools: list[dict]) -> list[str]:
    return [s["school_id"] for s in schools]


async def test_a_change_made_elsewhere_shows_once_the_time_to_live_is_over(
    aio_db: AsyncDbApiClient, sqlite_client: DbApiClient
) -> None:
    clock = Clock()
    cache = SchoolCache(ttl=60, clock=clock)
    assert _ids(await cache.schools(aio_db)) == ["1224", "1288"]
    sqlite_client.write("schools", pa.Table.from_pylist([LAKESIDE]), mode="upsert", key="school_id")
    clock.now += 59
    assert _ids(await cache.schools(aio_db)) == ["1224", "1288"]
    clock.now += 2
    assert _ids(await cache.schools(aio_db)) == ["1224", "1288", "1301"]


async def test_a_listing_begun_before_an_invalidation_is_not_kept(
    aio_db: AsyncDbApiClient,
    sqlite_client: DbApiClient,
    sqlite_db_api: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, scanned, release = sqlite_db_api.store, threading.Event(), threading.Event()
    scan = store.scan

    def slow_scan(collection: str, spec: ScanSpec, wanted: Wanted | None = None) -> Iterator[list[dict]]:
        pages = list(scan(collection, spec, wanted))  # read now, answer when the test says
        scanned.set()
        release.wait(10)
        return iter(pages)

    monkeypatch.setattr(store, "scan", slow_scan)
    cache = SchoolCache(ttl=60, clock=Clock())
    early = asyncio.ensure_future(cache.schools(aio_db))
    assert await asyncio.to_thread(scanned.wait, 10)
    sqlite_client.write("schools", pa.Table.from_pylist([LAKESIDE]), mode="upsert", key="school_id")
    cache.invalidate()  # as an admin's change through the app does
    release.set()
    assert _ids(await early) == ["1224", "1288"]  # begun before the change
    assert _ids(await cache.schools(aio_db)) == ["1224", "1288", "1301"]


async def test_while_the_db_api_is_away_the_last_list_is_served(
    aio_db: AsyncDbApiClient, sqlite_db_api: RunningServer
) -> None:
    clock = Clock()
    cache = SchoolCache(ttl=60, clock=clock)
    await cache.schools(aio_db)
    sqlite_db_api.stop(grace=0)
    clock.now += 120
    assert _ids(await cache.schools(aio_db)) == ["1224", "1288"]
    with pytest.raises(DbApiCallError):
        await SchoolCache(ttl=60, clock=clock).schools(aio_db)  # nothing read yet: the error


def test_what_pages_make_of_the_list_is_made_once_per_listing(
    stack: WebStack, school_listings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's JSON and the form's suggestions were made again for every request: with 10,000
    schools, ~25 ms of the event loop per anonymous request."""
    from web_app.routes import form, schools

    made: list[str] = []
    to_json, to_options = schools.public_json, form.school_options
    monkeypatch.setattr(schools, "public_json", lambda s: made.append("json") or to_json(s))
    monkeypatch.setattr(form, "school_options", lambda s: made.append("options") or to_options(s))
    stack.db.put_document(
        "schools", "1300", {"school_id": "1300", "name": "<b>Bold</b> & Co", "sector": "public", "size": 90}
    )
    with stack.client() as http:
        pages = [http.get("/") for _ in range(5)]
        lists = [http.get("/api/v1/schools") for _ in range(5)]
    assert sorted(made) == ["json", "options"]
    assert all(p.status_code == 200 for p in pages) and len({p.text.count("<option") for p in pages}) == 1
    assert '<option value="1300">&lt;b&gt;Bold&lt;/b&gt; &amp; Co</option>' in pages[0].text
    assert all(r.json() == lists[0].json() for r in lists)
    assert [s["school_id"] for s in lists[0].json()] == ["1224", "1288", "1300"]
