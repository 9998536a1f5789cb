"""Which notebooks there are and where: `notebooks/NAME.ipynb`, `notebooks/analyses/NAME.ipynb`,
and what `workbench run NAME` executes. Light to import: `workbench run` finds its first notebook
with it and starts that kernel before it imports the rest (`executor`, ~0.5 s)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

from pipeline_lib.runs.schedule import ALL, NOTEBOOK_NAME
from pipeline_lib.settings import Settings

# Analysis notebooks live in this folder of the notebooks directory.
ANALYSES = "analyses"


class UnknownNotebook(ValueError):
    pass


def _named(paths: Iterable[Path]) -> list[str]:
    return sorted(p.stem for p in paths if NOTEBOOK_NAME.fullmatch(p.stem) and p.stem != "all")


def builtin_notebooks(settings: Settings) -> list[str]:
    return _named(settings.notebooks_dir.glob("*.ipynb"))


def analyses(settings: Settings) -> list[str]:
    """The analysis notebooks (`notebooks/analyses/NAME.ipynb`), by name: what `all` runs after process."""
    return _named((settings.notebooks_dir / ANALYSES).glob("*.ipynb"))


def available_notebooks(settings: Settings) -> list[str]:
    return sorted({*builtin_notebooks(settings), *analyses(settings)})


def notebook_path(settings: Settings, name: str) -> Path:
    """`notebooks/NAME.ipynb`, else `notebooks/analyses/NAME.ipynb`; a name in both is refused, as
    it would be ambiguous in schedules and run ids."""
    if not NOTEBOOK_NAME.fullmatch(name) or name == "all":
        raise UnknownNotebook(
            f"{name!r} is not a notebook name (letters, digits, '_' and '-', not starting with '-')"
        )
    builtin = settings.notebooks_dir / f"{name}.ipynb"
    analysis = settings.notebooks_dir / ANALYSES / f"{name}.ipynb"
    if builtin.is_file() and analysis.is_file():
        raise UnknownNotebook(
            f"{name!r} is both a built-in notebook ({builtin}) and an analysis ({analysis}); "
            "rename the analysis"
        )
    for path in (builtin, analysis):
        if path.is_file():
            return path
    known = ", ".join(available_notebooks(settings)) or "none"
    raise UnknownNotebook(
        f"no notebook {name!r} in {settings.notebooks_dir} or its {ANALYSES}/ folder "
        f"(there are: {known}; or 'all')"
    )


def plan(name: str, settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The notebooks `workbench run NAME` executes, in order, and what each depends on: for `all`,
    clean, process (after clean), then every analysis (each after process)."""
    if name != "all":
        return [name], {}
    found = analyses(settings)
    needs = {later: earlier for earlier, later in itertools.pairwise(ALL)}
    return [*ALL, *found], {**needs, **dict.fromkeys(found, ALL[-1])}
