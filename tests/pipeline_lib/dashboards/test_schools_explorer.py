"""The Schools dashboard's widgets: the sector filter, the school search and the effect choice
change the caterpillar plot and the table (documents of the real processing step)."""

from __future__ import annotations

import re

import pytest

from pipeline_lib.dashboards import schools
from pipeline_lib.dashboards.source import Results
from pipeline_lib.process.results import suppress
from tests.pipeline_lib.dashboards import populate

pytestmark = [pytest.mark.slow, pytest.mark.spark]
K = 5


@pytest.fixture
def explorer(snapshot: populate.Snapshot) -> schools.SchoolsExplorer:
    results = Results(K, {d.key: suppress(d, K) for d in snapshot.processed})
    found = schools.explorer(results)
    assert found is not None
    return found


def _image(html: str) -> str:
    match = re.search(r'src="(data:image/png;base64,[^"]+)"', html)
    assert match, html[:300]
    return match.group(1)


def _shown(explorer: schools.SchoolsExplorer) -> str:
    """What the plot's Output widget holds now."""
    (output,) = explorer.plot.outputs
    return output["data"]["text/html"]


def test_choosing_a_sector_redraws_the_plot_with_that_sector_only(
    explorer: schools.SchoolsExplorer, snapshot: populate.Snapshot
) -> None:
    before = _image(_shown(explorer))
    explorer.sector.value = "catholic"
    after = _shown(explorer)
    assert _image(after) != before
    catholic = snapshot.population.schools.query("sector == 'catholic'")
    assert f"{len(catholic)} catholic schools;" in after
    assert 'alt="Caterpillar plot: school effect on math score, catholic schools"' in after
    assert set(re.findall(r"<td class=\"wb-text\">(public|private|catholic)</td>", explorer.table_html)) == {
        "catholic"
    }


def test_searching_a_school_highlights_it_and_lists_only_matches(
    explorer: schools.SchoolsExplorer, snapshot: populate.Snapshot
) -> None:
    school = snapshot.population.schools.iloc[3]
    before = _image(_shown(explorer))
    explorer.search.value = school["school_id"].lower()
    shown = _shown(explorer)
    assert _image(shown) != before
    assert f"1 match \u201c{school['school_id'].lower()}\u201d (highlighted)" in shown
    rows = re.findall(r"<tr>(.*?)</tr>", explorer.table_html.split("<tbody>")[1])
    assert len(rows) == 1 and school["name"].replace("'", "&#x27;") in rows[0]


def test_a_search_that_finds_nothing_says_so(explorer: schools.SchoolsExplorer) -> None:
    explorer.search.value = "no such school zzz"
    assert (
        "0 school(s) match" in explorer.table_html
        and "Try part of the code or of the name." in explorer.table_html
    )


def test_choosing_the_slope_shows_the_slope_effects(explorer: schools.SchoolsExplorer) -> None:
    before = _image(_shown(explorer))
    explorer.effect.value = "slope"
    after = _shown(explorer)
    assert _image(after) != before and "school difference in ses slope" in after
