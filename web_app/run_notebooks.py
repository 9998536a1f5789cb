"""An archived run notebook rendered to HTML, so nobody needs Jupyter to see why a run failed.

The notebook's outputs are whatever the notebook printed, so the page is sanitised (nh3) and
served with a CSP that sandboxes it (no scripts, an opaque origin without the session cookie)
inside the run page: two walls, either of which stops a script.
"""

from __future__ import annotations

from pathlib import Path

import nh3

NOTEBOOK_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "frame-ancestors 'self'"
)


class NotArchived(LookupError):
    pass


def archived_path(output_path: str | None, archive: Path) -> Path:
    """The run's output notebook, only if it lies inside the run archive this server serves."""
    if not output_path:
        raise NotArchived("this run has no output notebook (it never started executing)")
    path = Path(output_path).resolve()
    if not path.is_relative_to(archive.resolve()):
        raise NotArchived("the output notebook is outside this server's run archive")
    if not path.is_file():
        raise NotArchived(f"the output notebook is not on this server ({path.name})")
    return path


# What a rendered notebook may contain: text, tables, images (inline only), nbconvert's styles.
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


def render_html(path: Path) -> str:
    """Static HTML of the notebook, sanitised with nh3 (scripts, frames, forms, event handlers and
    `javascript:` links removed; nbconvert's styles kept). A second wall behind the sandbox CSP."""
    from nbconvert import HTMLExporter

    body, _resources = HTMLExporter(template_name="lab").from_filename(str(path))
    cleaned = nh3.clean(
        body,
        tags=_TAGS,
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=_only_inline_images,
        url_schemes={"http", "https", "mailto", "data"},
        strip_comments=True,
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>'
        f'<body class="jp-Notebook" data-jp-theme-light="true">{cleaned}</body></html>'
    )
