"""Which dashboards there are and the names they are served under; light to import (the web app
and the CLI read it without loading pandas or matplotlib)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from pipeline_lib.settings import LIVE_DASHBOARDS_PATH, Settings

# Set in the kernel that renders snapshots (`dashboards.snapshot`): draw without widgets.
SNAPSHOT_ENV = "WORKBENCH_DASHBOARD_SNAPSHOT"
# A dashboard's name as served (/dashboards/<name>): its notebook's file name without `.ipynb`.
NAME_PATTERN = r"[a-z][a-z0-9_]{0,63}"
# The order pages list them in; others follow by name.
SHIPPED = ("overview", "schools", "models", "data_quality", "all_results")


def is_snapshot() -> bool:
    """True while rendering a static snapshot: no kernel will answer a widget, so dashboards draw
    their widgets' static equivalent."""
    return os.environ.get(SNAPSHOT_ENV) == "1"


def dashboards_dir(settings: Settings) -> Path:
    return settings.notebooks_dir / "dashboards"


def dashboard_notebooks(settings: Settings) -> Iterator[Path]:
    """The dashboard notebooks (checkpoints and other hidden folders aside): what Voilà serves."""
    folder = dashboards_dir(settings)
    for path in sorted(folder.rglob("*.ipynb")):
        if not any(part.startswith(".") for part in path.relative_to(folder).parts):
            yield path


# /dashboards/live/ is the live dashboards' path, so no snapshot may take that name.
RESERVED = frozenset({LIVE_DASHBOARDS_PATH.rsplit("/", 1)[1]})


def dashboard_name(path: Path) -> str | None:
    """The name a dashboard is served under (`overview` for overview.ipynb); None for a file name
    that cannot be one."""
    return path.stem if re.fullmatch(NAME_PATTERN, path.stem) and path.stem not in RESERVED else None


def live_path(name: str) -> str:
    """The path of a dashboard's live (Voilà) page, on Voilà and through the web app's proxy."""
    return f"{LIVE_DASHBOARDS_PATH}/voila/render/{name}.ipynb"


def served_names(settings: Settings) -> list[str]:
    """The names of the dashboards that get snapshots, shipped ones first."""
    names = {name for path in dashboard_notebooks(settings) if (name := dashboard_name(path))}
    return sorted(names, key=lambda name: (SHIPPED.index(name) if name in SHIPPED else len(SHIPPED), name))
