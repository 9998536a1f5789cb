"""Reading a live page's kernel id as the page streams through the proxy (`web_app.page_watch`):
pure logic; the whole path, with a real Voilà, is in test_live_dashboards.py."""

from __future__ import annotations

from web_app.page_watch import SCAN_BYTES, KernelIdReader

KERNEL = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CONFIG = (
    f'<script id="jupyter-config-data" type="application/json">{{"baseUrl": "/", "kernelId": "{KERNEL}"}}'
)


def test_the_id_is_found_whole_however_the_page_is_cut() -> None:
    page = ("<html><head>" + "x" * 5000 + CONFIG + "</script></head><body>" + "y" * 3000).encode()
    for size in (1, 7, 64, 4096, len(page)):
        reader = KernelIdReader()
        found = [reader.feed(page[i : i + size]) for i in range(0, len(page), size)]
        assert [f for f in found if f] == [KERNEL], size
        assert reader.kernel_id == KERNEL


def test_only_the_pages_head_is_searched() -> None:
    reader = KernelIdReader()
    assert reader.feed(b"z" * SCAN_BYTES) is None
    assert reader.feed(CONFIG.encode()) is None and reader.kernel_id is None


def test_a_look_alike_is_not_an_id() -> None:
    reader = KernelIdReader()
    assert reader.feed(b'"kernelId": "../../api/shutdown/x", "kernelId": "ABCDEF"') is None
