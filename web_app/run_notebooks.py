"""An archived run notebook rendered to HTML, so nobody needs Jupyter to see why a run failed.

The notebook's outputs are whatever the notebook printed, so the page is sanitised (nh3) and
served with a CSP that sandboxes it (no scripts, an opaque origin without the session cookie)
inside the run page: two walls, either of which stops a script.
"""

from __future__ import annotations

from pathlib import Path

from web_app.sanitise import clean_html

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


def render_html(path: Path) -> str:
    """Static HTML of the notebook, sanitised with nh3 (scripts, frames, forms, event handlers and
    `javascript:` links removed; nbconvert's styles kept). A second wall behind the sandbox CSP."""
    from nbconvert import HTMLExporter

    body, _resources = HTMLExporter(template_name="lab").from_filename(str(path))
    cleaned = clean_html(body)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>'
        f'<body class="jp-Notebook" data-jp-theme-light="true">{cleaned}</body></html>'
    )
