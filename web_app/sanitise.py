"""HTML made by notebooks, made safe to serve: the one policy for archived run notebooks and
dashboard snapshots. Text, tables, inline styles and inline images stay; scripts, frames, forms,
event handlers and `javascript:` links go (nh3, a whitelist sanitiser)."""

from __future__ import annotations

import nh3

# What a notebook's page may contain: text, tables, images (inline only), its styles.
_TAGS = (nh3.ALLOWED_TAGS | {"style"}) - {"area", "map"}
_ATTRIBUTES = {
    "*": {"class", "id", "style", "title", "lang", "dir"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
}
# Removed with their content (not left as text).
_DROPPED_WITH_CONTENT = {"script", "title", "iframe", "object", "embed", "noscript", "template", "textarea"}


def _only_inline_images(tag: str, attribute: str, value: str) -> str | None:
    """Images only inline (`data:image/`, all the page's CSP loads anyway), and `data:` URLs for
    images only: a link to one would open whatever it holds."""
    url = value.strip().lower()
    if tag == "img" and attribute == "src":
        return value if url.startswith("data:image/") else None
    if attribute == "href" and url.startswith("data:"):
        return None
    return value


def clean_html(body: str) -> str:
    """`body` with everything but text, tables, styles and inline images removed."""
    return nh3.clean(
        body,
        tags=_TAGS,
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=_only_inline_images,
        url_schemes={"http", "https", "mailto", "data"},
        strip_comments=True,
    )
