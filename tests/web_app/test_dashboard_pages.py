"""`/dashboards` and `/dashboards/<name>`: the latest snapshot of each dashboard, behind the app's
sign-in (`results:read`), sanitised, on a page that allows no script; names checked."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import time

from pipeline_lib.contract.collections import DASHBOARDS
from tests.web_app.conftest import WebStack
from tests.web_app.test_runs_pages import HOSTILE_HTML, _signed_in

RENDERED = dt.datetime(2026, 11, 30, 9, 15, tzinfo=dt.UTC)


def _store(stack: WebStack, name: str, body: str, title: str = "Overview") -> None:
    stack.db.put_document(
        DASHBOARDS,
        name,
        {"title": title, "html": body, "rendered_at": RENDERED, "run_id": "process-20261130T091400Z-1a2b3c"},
    )


def test_anonymous_viewers_are_sent_to_sign_in_and_submitters_are_refused(stack: WebStack) -> None:
    _store(stack, "overview", "<p>3,000 students</p>")
    with stack.client() as anonymous:
        for path in ("/dashboards", "/dashboards/overview"):
            response = anonymous.get(path)
            assert response.status_code == 303 and response.headers["location"] == f"/login?next={path}"
            assert "3,000" not in response.text
    with _signed_in(stack, "submitter") as submitter:
        refused = submitter.get("/dashboards/overview")
        assert refused.status_code == 403 and "results:read" in refused.text and "3,000" not in refused.text


def test_a_reader_sees_the_latest_snapshot_with_its_run_and_time(stack: WebStack) -> None:
    _store(
        stack,
        "overview",
        '<style>.wb-kpi{color:red}</style><h1>Overview</h1><p class="wb-kpi">3,000 students</p>',
    )
    with _signed_in(stack, "reader") as reader:
        page = reader.get("/dashboards/overview")
        assert page.status_code == 200
        assert (
            '<p class="wb-kpi">3,000 students</p>' in page.text
            and "<style>.wb-kpi{color:red}</style>" in page.text
        )
        assert "process-20261130T091400Z-1a2b3c" in page.text and "2026-11-30 09:15 UTC" in page.text
        assert "Open the live dashboard" not in page.text  # live (Voilà) dashboards are for analysts
        policy = page.headers["content-security-policy"]
        assert "script-src 'none'" in policy and "style-src 'self' 'unsafe-inline'" in policy
        index = reader.get("/dashboards").text
        assert 'href="/dashboards/overview">Overview</a>' in index
        assert 'href="/dashboards/schools">Schools</a>' in index and "Not rendered yet" in index
    with _signed_in(stack, "analyst") as analyst:
        assert "Open the live dashboard" in analyst.get("/dashboards/overview").text


def test_a_snapshot_is_served_sanitised(stack: WebStack) -> None:
    _store(stack, "models", f"<script>window.stolen = 1</script>{HOSTILE_HTML}", title="Models")
    with _signed_in(stack, "reader") as reader:
        page = reader.get("/dashboards/models").text
    body = page.split('<article class="dashboard-snapshot">', 1)[1]
    assert "stolen" not in body and "<script" not in body and "<iframe" not in body and "<form" not in body
    assert "evil.example" not in body and "javascript:" not in body
    assert '<div class="kept">a table follows</div>' in body and "<td>school 17</td>" in body
    digest = hashlib.sha256(base64.b64decode("iVBORw0KGgo=")).hexdigest()[:32]
    assert f'<img alt="plot" src="/dashboards/models/images/{digest}.png">' in body


def test_a_snapshots_plots_are_served_as_their_own_cacheable_urls(stack: WebStack) -> None:
    png, svg = (
        b"\x89PNG\r\n\x1a\nplot-bytes",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>',
    )
    encoded = {kind: base64.b64encode(data).decode() for kind, data in (("png", png), ("svg", svg))}
    _store(
        stack,
        "overview",
        f'<figure><img alt="a" src="data:image/png;base64,{encoded["png"]}"></figure>'
        f'<img alt="b" src="data:image/svg+xml;base64,{encoded["svg"]}">'
        '<img alt="c" src="data:image/png;base64,not*base64">',
    )
    with _signed_in(stack, "reader") as reader:
        page = reader.get("/dashboards/overview").text
        urls = re.findall(r'src="(/dashboards/overview/images/[0-9a-f]{32}\.(?:png|svg))"', page)
        assert len(urls) == 2  # the one that does not decode gets no URL
        first = reader.get(urls[0])
        assert first.status_code == 200 and first.content == png
        assert first.headers["content-type"] == "image/png"
        assert "immutable" in first.headers["cache-control"]
        drawing = reader.get(urls[1])
        assert drawing.content == svg and drawing.headers["content-type"] == "image/svg+xml"
        assert "sandbox" in drawing.headers["content-security-policy"]  # its script never runs
        assert reader.get(f"/dashboards/overview/images/{'0' * 32}.png").status_code == 404
        assert reader.get("/dashboards/overview/images/..%2F..%2Fsecrets.png").status_code in (404, 422)
    with stack.client() as anonymous:
        assert anonymous.get(urls[0]).status_code == 303
    with _signed_in(stack, "submitter") as submitter:
        assert submitter.get(urls[0]).status_code == 403


def test_unknown_and_unrendered_dashboards(stack: WebStack) -> None:
    with _signed_in(stack, "reader") as reader:
        missing = reader.get("/dashboards/nonesuch")
        assert missing.status_code == 404 and "No such dashboard" in missing.text
        assert reader.get("/dashboards/..%2Fsecrets").status_code == 404
        assert reader.get("/dashboards/Overview").status_code in (404, 422)
        waiting = reader.get("/dashboards/schools")  # shipped, not rendered yet
        assert waiting.status_code == 200 and "has not been rendered yet" in waiting.text


def test_a_new_rendering_is_served_once_the_cache_expires(stack: WebStack) -> None:
    stack.app.state.snapshot_cache.ttl = 0.0
    _store(stack, "overview", "<p>first rendering</p>")
    with _signed_in(stack, "reader") as reader:
        assert "first rendering" in reader.get("/dashboards/overview").text
        stack.db.put_document(
            DASHBOARDS,
            "overview",
            {
                "title": "Overview",
                "html": "<p>second rendering</p>",
                "rendered_at": RENDERED + dt.timedelta(hours=1),
            },
        )
        # The first view after the change may get the rendering read before (it starts the read
        # in the background, so no viewer waits for it); a view soon after gets the new one.
        deadline = time.monotonic() + 10
        while "second rendering" not in (page := reader.get("/dashboards/overview").text):
            assert time.monotonic() < deadline, "the new rendering was never served"
            time.sleep(0.05)
        assert "first rendering" not in page and "2026-11-30 10:15 UTC" in page
