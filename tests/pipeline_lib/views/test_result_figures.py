"""The process report's figures: every successful analysis document can be drawn with all its
text inside the figure, a failed one has no figure, and the report shows it as PNG."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline_lib.contract import result_keys as keys
from pipeline_lib.process.analysis import descriptive_results
from pipeline_lib.process.analysis.base import Failure
from pipeline_lib.views import report, result_figures
from tests.pipeline_lib.process.analysis import simulated
from tests.pipeline_lib.process.analysis.simulated import descriptive_stats as stats_of

STAMP = descriptive_results.Stamp(
    run_id="r",
    computed_at=dt.datetime(2026, 11, 29, tzinfo=dt.UTC),
    n_input=4_000,
    input_high_water_mark=4_000,
    k_min_group=5,
    seed=0,
)


@pytest.fixture(scope="module")
def all_documents() -> list:
    students = simulated.students(4_000, 25, seed=5)
    stats = {
        "overall": stats_of("math_score", {"": (4000, 50.0)}, "x").drop(columns="x"),
        "by_sex": stats_of("math_score", {"female": (2000, 50.0), "male": (2000, 51.0)}, "sex"),
        "by_school": stats_of("math_score", {"S1": (100, 50.0), "S2": (3, 51.0)}, "school_id"),
    }
    pairs = pd.DataFrame(
        {"a": ["ses"], "b": ["math_score"], "n": [4000], "r": [0.4], "ci_low": [0.37], "ci_high": [0.43]}
    )
    return [
        *descriptive_results.descriptives_documents(stats, STAMP),
        descriptive_results.correlations_document(pairs, STAMP),
        *simulated.model_documents(students, STAMP, folds=5, seed=0),
    ]


def test_every_successful_document_has_a_figure_and_a_failed_one_none(all_documents: list) -> None:
    for doc in all_documents:
        figure = result_figures.plot(doc)
        assert isinstance(figure, Figure), doc.key
        assert figure.axes and any(ax.has_data() for ax in figure.axes), doc.key
    failed = descriptive_results.failure_document(
        keys.OLS, STAMP, Failure("ols", "too few"), engine="statsmodels"
    )
    assert result_figures.plot(failed) is None


def test_the_caterpillar_plot_has_one_point_per_school(all_documents: list) -> None:
    doc = next(d for d in all_documents if d.key == keys.MIXEDLM_SCHOOL_EFFECTS)
    caterpillar = result_figures.plot(doc).axes[1]
    assert len(caterpillar.lines[0].get_xdata()) == 25


def test_the_report_shows_a_png_and_cuts_long_tables(all_documents: list) -> None:
    doc = next(d for d in all_documents if d.key == keys.MIXEDLM_SCHOOL_EFFECTS)
    assert report.figure_png(doc).startswith(b"\x89PNG")
    shown = dict(report.table_frames(doc, max_rows=10))
    caption = next(c for c in shown if c.startswith("Predicted school effects"))
    assert caption.endswith("first 10 of 25 rows") and len(shown[caption]) == 10


def test_every_analysis_key_has_a_figure() -> None:
    assert set(keys.ANALYSIS_KEYS) <= set(result_figures._FIGURES)


def _inside(figure: Figure) -> bool:
    """Everything drawn (tick labels, titles, axis and colour-bar labels, legends) lies wholly
    inside the figure: nothing is cut off in the PNG."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    drawn = figure.get_tightbbox(renderer)  # inches
    page = figure.bbox_inches.padded(0.01)  # a pixel of rounding
    return page.x0 <= drawn.x0 and drawn.x1 <= page.x1 and page.y0 <= drawn.y0 and drawn.y1 <= page.y1


def test_every_figure_keeps_its_text_inside_with_the_margins_it_measures(all_documents: list) -> None:
    """Figures have fixed margins (no layout engine): those for names are measured from them."""
    for doc in all_documents:
        assert _inside(result_figures.plot(doc)), doc.key
    ols = next(d for d in all_documents if d.key == keys.OLS)
    # A formula is the analyst's: its terms can be as long as they write them.
    long_name = "sector[a category whose name runs long]:cses:" + "x" * 60
    coefficients = next(t for t in ols.tables if t.name == "coefficients")
    at = coefficients.columns.index("term")
    rows = [[long_name if i == at else value for i, value in enumerate(row)] for row in coefficients.rows]
    renamed = coefficients.model_copy(update={"rows": rows})
    long_terms = ols.model_copy(update={"tables": [renamed if t is coefficients else t for t in ols.tables]})
    figure = result_figures.plot(long_terms)
    assert long_name in [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert _inside(figure)
    panel = figure.axes[0].get_position()  # the figure widened: the plot keeps its room
    assert panel.width * figure.get_figwidth() >= 3 and panel.x1 <= 1
