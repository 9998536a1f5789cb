"""An archived run notebook rendered to HTML, so nobody needs Jupyter to see why a run failed.

The notebook's outputs are whatever the notebook printed, so the page is served with a CSP that
sandboxes it (no scripts, an opaque origin without the session cookie) inside the run page.
"""

from __future__ import annotations

from pathlib import Path

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
    """Static HTML of the notebook: scripts removed (the template's and any output's), styles kept."""
    from bs4 import BeautifulSoup
    from nbconvert import HTMLExporter

    body, _resources = HTMLExporter(template_name="lab").from_filename(str(path))
    page = BeautifulSoup(body, "html.parser")
    for script in page.find_all("script"):
        script.decompose()
    return str(page)
