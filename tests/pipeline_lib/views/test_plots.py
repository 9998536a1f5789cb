"""The shared panels and the figures built on them: boxes from stored quartiles, the forest plot,
the calibration curve, and hidden groups marked as hidden."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from pipeline_lib.views import plots
from pipeline_lib.views.palette import colour

ROWS = pd.DataFrame(
    {
        "group": ["public", "catholic", "private"],
        "n": [400, 300, 3],
        "mean": [50.0, 53.0, None],
        "min": [20.0, 25.0, None],
        "q1": [45.0, 48.0, None],
        "median": [50.0, 53.0, None],
        "q3": [55.0, 58.0, None],
        "max": [80.0, 85.0, None],
        "suppressed": [False, False, True],
    }
)


def _axes():
    return Figure().add_subplot()


def test_boxes_keep_a_label_for_a_row_without_a_median_and_draw_no_box_for_it() -> None:
    axes = _axes()
    plots.boxes(axes, ROWS, ["a", "b", "c"])
    assert [t.get_text() for t in axes.get_xticklabels()] == ["a", "b", "c"]
    assert len(axes.patches) == 2


def test_box_whiskers_reach_min_and_max_only_when_asked() -> None:
    def whisker_ends(whiskers: bool) -> set[float]:
        axes = _axes()
        plots.boxes(axes, ROWS.head(1), ["a"], whiskers=whiskers)
        return {float(y) for line in axes.lines for y in line.get_ydata()}

    assert {20.0, 80.0} <= whisker_ends(True)
    assert not {20.0, 80.0} & whisker_ends(False)  # public view: no single student's value


def test_group_boxes_mark_a_hidden_group_as_hidden_and_colour_groups_by_name() -> None:
    figure = plots.group_boxes({"sector": ROWS}, y_label="Math", k=5)
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == [
        "public\nn=400",
        "catholic\nn=300",
        "private\nhidden (< 5)",
    ]
    faces = [patch.get_facecolor()[:3] for patch in axes.patches]
    assert np.allclose(faces, [to_rgb(colour("sector", s)) for s in ("public", "catholic")])


def test_the_forest_plot_puts_the_first_term_on_top_and_marks_zero() -> None:
    terms = pd.DataFrame(
        {"term": ["ses", "minority"], "estimate": [3.0, -1.0], "ci_low": [2.0, -2.0], "ci_high": [4.0, 0.5]}
    )
    axes = _axes()
    plots.forest(axes, terms, x_label="points")
    labels = [t.get_text() for t in axes.get_yticklabels()]
    assert labels == ["minority", "ses"]  # bottom to top
    assert any(list(line.get_xdata()) == [0, 0] for line in axes.lines)
    assert axes.get_xlabel() == "points"


def test_the_calibration_curve_leaves_out_bins_without_figures() -> None:
    bins = pd.DataFrame(
        {"mean_predicted": [0.1, 0.5, None], "observed_rate": [0.12, 0.45, None], "n": [100, 50, 2]}
    )
    axes = _axes()
    plots.calibration_curve(axes, bins)
    curve = axes.lines[1]
    assert list(curve.get_xdata()) == [0.1, 0.5]
    assert axes.get_xlim() == (0, 1) and axes.get_ylim() == (0, 1)


def test_the_coefficients_and_calibration_figures_draw_through_the_panels() -> None:
    terms = pd.DataFrame({"term": ["ses"], "estimate": [3.0], "ci_low": [2.0], "ci_high": [4.0]})
    bins = pd.DataFrame({"mean_predicted": [0.1], "observed_rate": [0.12], "n": [100]})
    assert plots.coefficients(terms, x_label="points").axes[0].get_xlabel() == "points"
    assert plots.calibration(bins).axes[0].get_ylabel() == "Observed share at risk"


def test_a_group_hidden_so_others_cannot_be_derived_is_not_called_small() -> None:
    rows = ROWS.assign(note=[None, None, "hidden so others cannot be derived"])
    figure = plots.group_boxes({"sector": rows}, y_label="Math", k=5)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()][-1] == "private\nhidden"


def _tick_labels(figure: Figure) -> list[str]:
    """The x axis's labels within its view (the locator also places ticks beyond it), minor ones too."""
    figure.canvas.draw()
    axis = figure.axes[0].xaxis
    low, high = sorted(axis.get_view_interval())
    shown = []
    for ticker, locations in ((axis.major, axis.get_majorticklocs()), (axis.minor, axis.get_minorticklocs())):
        inside = [location for location in locations if low <= location <= high]
        shown += [text for text in ticker.formatter.format_ticks(inside) if text]
    return shown


def test_bars_spanning_powers_of_ten_are_on_a_log_axis_labelled_with_plain_numbers() -> None:
    # matplotlib's own labels were 10^x set by its TeX-like parser: harder to read, and slower for
    # the first such figure a process draws (the dashboards' Data quality page).
    labels = pd.Series(["a", "b", "c", "d"])
    counts = plots.bars(labels, pd.Series([15_234, 812, 95, 3]), x_label="records")
    assert counts.axes[0].get_xscale() == "log"
    assert _tick_labels(counts) == ["10", "100", "1,000", "10,000"]
    shares = plots.bars(labels, pd.Series([0.8, 0.05, 0.004, 0.3]), x_label="share", value_format="{:.3f}")
    assert _tick_labels(shares) == ["0.01", "0.1", "1"]
