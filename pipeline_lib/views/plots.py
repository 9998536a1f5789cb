"""Every chart of the views, in matplotlib under one style (`style`, colours from `palette`).

Panels (`boxes`, `forest`, `calibration_curve`) draw on axes they are given: the dashboards' figures
here and the process report's composite figures (`result_figures`) share them. Figures
(`histogram`, `group_boxes`, `coefficients`, `calibration`, ...) take the frames of `frames` and
leave fixed margins for their labels. Hidden (suppressed) groups are marked as hidden, never drawn
as zero."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from pipeline_lib.process.results import small_note
from pipeline_lib.views.palette import CYCLE, GREY, OKABE_ITO, colour
from pipeline_lib.views.style import label_width, new_figure, with_style

# -- panels: drawn on the axes they are given ----------------------------------------------------


def plain_log_ticks(axis: Axis, subs: Sequence[float] = (1.0,)) -> None:
    """A log-scale axis labelled with plain numbers (1,000 rather than 10^3) at `subs` times each
    power of ten, and no minor labels (2x10^1, 3x10^1... ran together). Also quicker: matplotlib
    sets 10^x labels with its TeX-like parser, 0.06-0.13 s more for the first such figure of a
    process (measured on Data quality's changes)."""
    axis.set_major_locator(LogLocator(subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda value, _position: _plain(value)))
    axis.set_minor_formatter(NullFormatter())


def _plain(value: float) -> str:
    return f"{value:,.0f}" if value >= 1 else np.format_float_positional(value, trim="-")  # 0.00001


def boxes(
    axes: Axes,
    rows: pd.DataFrame,
    labels: Sequence[str],
    colours: Sequence[str] | None = None,
    *,
    whiskers: bool = False,
) -> None:
    """A box per row of `rows` from its stored quartiles (`q1`, `median`, `q3`), a diamond at its
    `mean`, at positions 0, 1, ... under `labels`; a row without a median keeps its label and gets
    no box. Whiskers reach `min` and `max` when `whiskers` (for analysts: each is one student's
    value), else they collapse onto the box."""
    positions, stats = [], []
    for i, row in enumerate(rows.itertuples(index=False)):
        if pd.isna(row.median):
            continue
        positions.append(i)
        stats.append(
            {
                "med": row.median,
                "q1": row.q1,
                "q3": row.q3,
                "whislo": row.min if whiskers else row.q1,
                "whishi": row.max if whiskers else row.q3,
                "mean": row.mean,
                "fliers": [],
            }
        )
    if positions:
        drawn = axes.bxp(
            stats,
            positions=positions,
            showmeans=True,
            patch_artist=True,
            widths=0.6,
            meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black"},
            medianprops={"color": "black", "linewidth": 1.6},
        )
        for patch, i in zip(drawn["boxes"], positions, strict=True):
            patch.set_facecolor(colours[i] if colours else CYCLE[0])
            patch.set_alpha(0.85)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_xlim(-0.6, len(labels) - 0.4)


def forest(axes: Axes, terms: pd.DataFrame, *, x_label: str) -> None:
    """Each term's `estimate` with its 95% interval (`ci_low` to `ci_high`), first term on top,
    zero marked: a forest plot."""
    terms = terms.iloc[::-1].reset_index(drop=True)
    y = np.arange(len(terms))
    axes.hlines(
        y,
        terms["ci_low"].astype(float),
        terms["ci_high"].astype(float),
        color=OKABE_ITO["blue"],
        linewidth=2.2,
    )
    axes.scatter(terms["estimate"].astype(float), y, color=OKABE_ITO["blue"], s=36, zorder=3)
    axes.axvline(0, color=OKABE_ITO["black"], linewidth=1.0)
    _label_rows(axes, y, terms["term"], x_label)


def calibration_curve(axes: Axes, frame: pd.DataFrame) -> None:
    """Observed share at risk (`observed_rate`) against the mean predicted probability
    (`mean_predicted`) per bin, dots sized by students (`n`), and the diagonal of perfect
    calibration."""
    axes.plot([0, 1], [0, 1], linestyle="--", color=GREY, label="perfect calibration")
    shown = frame.dropna(subset=["mean_predicted", "observed_rate"])
    largest = max(float(shown["n"].max()), 1.0) if len(shown) else 1.0
    axes.plot(shown["mean_predicted"], shown["observed_rate"], color=OKABE_ITO["vermillion"], linewidth=1.5)
    axes.scatter(
        shown["mean_predicted"],
        shown["observed_rate"],
        s=20 + 200 * shown["n"] / largest,
        color=OKABE_ITO["vermillion"],
        edgecolor="white",
        zorder=3,
        label="students by predicted risk",
    )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("Predicted probability of being at risk")
    axes.set_ylabel("Observed share at risk")
    axes.legend(loc="upper left")


def _label_rows(axes: Axes, positions: Sequence[float], names: Sequence[object], x_label: str) -> None:
    """Names on the rows of a horizontal chart, without horizontal grid lines through them."""
    axes.set_yticks(positions, names)
    axes.set_xlabel(x_label)
    axes.grid(axis="y", visible=False)


# -- figures --------------------------------------------------------------------------------------


def _all_small(rows: pd.DataFrame, k: int) -> bool:
    """Whether every row is hidden for fewer than k students (a row without a note counts so)."""
    if "note" not in rows:
        return True
    return all(not isinstance(note, str) or note == small_note(k) for note in rows["note"])


@with_style
def histogram(bins: pd.DataFrame, *, x_label: str, k: int, fill: str = OKABE_ITO["blue"]) -> Figure:
    """Students per bin; hidden bins are marked with a grey triangle (named "fewer than k
    students" when that is why every one of them is hidden, per its `note`)."""
    figure = new_figure(6.2, 3.9, top=0.45)
    axes = figure.add_subplot()
    shown, hidden = bins[~bins["suppressed"]], bins[bins["suppressed"]]
    widths = shown["upper"] - shown["lower"]
    axes.bar(
        shown["lower"],
        shown["n"].astype(float),
        width=widths,
        align="edge",
        color=fill,
        edgecolor="white",
        linewidth=0.6,
        label="students",
    )
    if len(hidden):
        middles = (hidden["lower"] + hidden["upper"]) / 2
        axes.plot(
            middles,
            np.zeros(len(hidden)),
            linestyle="none",
            marker="^",
            markersize=9,
            color=GREY,
            clip_on=False,
            label=f"fewer than {k} students (hidden)" if _all_small(hidden, k) else "hidden",
        )
        axes.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2)
    axes.set_xlabel(x_label)
    axes.set_ylabel("Students")
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_formatter("{x:,.0f}")
    return figure


@with_style
def group_boxes(summaries: Mapping[str, pd.DataFrame], *, y_label: str, k: int) -> Figure:
    """One panel per grouping (e.g. sector, sex, minority): a box per group from its quartiles and
    a diamond at the mean. No whiskers: the minimum and maximum are single students' scores. A
    hidden group is named "hidden (< k)", or "hidden" when its `note` gives another reason; a
    shown group whose quartiles are hidden keeps its size and gets no box."""
    figure = new_figure(9.5, 4.0, bottom=0.85, top=0.4)
    panels = figure.subplots(1, len(summaries), sharey=True, squeeze=False, gridspec_kw={"wspace": 0.08})[0]
    for axes, (grouping, frame) in zip(panels, summaries.items(), strict=True):
        suppressed = frame["suppressed"].astype(bool)
        hidden = suppressed | frame["median"].isna()
        labels, colours = [], []
        for i, (group, n, shut) in enumerate(zip(frame["group"], frame["n"], suppressed, strict=True)):
            label = group_label(grouping, group)
            if shut:
                why = f"< {k}" if _all_small(frame.iloc[[i]], k) else ""
                labels.append(f"{label}\nhidden ({why})" if why else f"{label}\nhidden")
            else:
                labels.append(f"{label}\nn={int(n):,}")
            colours.append(GREY if shut else colour(grouping, group, i))
        boxes(axes, frame.assign(median=frame["median"].where(~hidden)), labels, colours)
        axes.set_title(f"By {grouping}")
    panels[0].set_ylabel(y_label)
    return figure


def group_label(grouping: str, value: object) -> str:
    """A group's name for a reader: minority flags as words, other values as they are."""
    if grouping == "minority":
        return "minority" if str(value) == "True" else "not minority"
    return str(value)


@with_style
def relation(binned: pd.DataFrame, lines: pd.DataFrame) -> Figure:
    """Mean math score per SES bin (area by students) and each sector's least-squares line."""
    figure = new_figure(9.0, 4.6, top=0.15)
    axes = figure.add_subplot()
    largest = max(float(binned["n"].max()), 1.0) if len(binned) else 1.0
    for i, line in enumerate(lines.itertuples(index=False)):
        if pd.isna(line.slope):
            continue
        points = binned[binned["sector"] == line.sector]
        if line.sector == "all":
            low, high = binned["ses_lower"].min(), binned["ses_upper"].max()
            style = {"color": OKABE_ITO["black"], "linestyle": "--", "linewidth": 1.6}
        else:
            low, high = points["ses_lower"].min(), points["ses_upper"].max()
            style = {"color": colour("sector", line.sector, i), "linewidth": 2.4}
            axes.scatter(
                points["mean_ses"],
                points["mean_math"],
                s=20 + 280 * points["n"] / largest,
                color=style["color"],
                alpha=0.55,
                edgecolor="white",
                linewidth=0.6,
            )
        if pd.isna(low) or pd.isna(high):
            continue
        xs = np.array([low, high], dtype=float)
        who = "all students" if line.sector == "all" else line.sector
        axes.plot(
            xs,
            line.intercept + line.slope * xs,
            **style,
            label=f"{who}: {line.slope:+.1f} points per SES point (n={int(line.n):,})",
        )
    axes.set_xlabel("Socio-economic status index (SES)")
    axes.set_ylabel("Mean math score")
    axes.legend(loc="upper left")
    return figure


NAMED_MATCHES = 3  # more names than this would overlap: the table lists them


@with_style
def caterpillar(ranked: pd.DataFrame, *, effect: str, matches: pd.Series, y_label: str) -> Figure:
    """Each school's predicted effect with its 95% interval, lowest to highest, coloured by sector;
    schools matching the search are drawn large with a black edge, and named when few."""
    figure = new_figure(9.5, 4.8, bottom=0.45, top=0.15)
    axes = figure.add_subplot()
    x = np.arange(len(ranked))
    colours = [colour("sector", s, 0) for s in ranked["sector"]]
    axes.vlines(x, ranked["low"], ranked["high"], colors=colours, linewidth=1.0, alpha=0.6)
    axes.scatter(x, ranked[effect], c=colours, s=14, zorder=3)
    axes.axhline(0, color=OKABE_ITO["black"], linewidth=1.0)
    hit = matches.to_numpy(dtype=bool)
    if hit.any():
        axes.scatter(
            x[hit],
            ranked[effect][hit],
            s=90,
            facecolor=OKABE_ITO["yellow"],
            edgecolor=OKABE_ITO["black"],
            linewidth=1.5,
            zorder=4,
            label="matching your search",
        )
        if hit.sum() <= NAMED_MATCHES:
            for position in x[hit]:
                axes.annotate(
                    str(ranked["name"].iloc[position]),
                    (position, ranked["high"].iloc[position]),
                    xytext=(0, 6),
                    textcoords="offset points",
                    ha="center",
                    fontsize=10,
                    bbox={
                        "boxstyle": "round,pad=0.2",
                        "facecolor": "white",
                        "edgecolor": "none",
                        "alpha": 0.85,
                    },
                )
    for sector in dict.fromkeys(ranked["sector"]):
        axes.scatter([], [], color=colour("sector", sector, 0), s=30, label=str(sector))
    axes.legend(loc="upper left", ncols=4)
    axes.set_xlabel(f"Schools, ranked by predicted effect ({len(ranked):,} shown)")
    axes.set_ylabel(y_label)
    axes.set_xlim(-1, max(len(ranked), 1))
    axes.margins(y=0.15)  # room for the legend and the names above the intervals
    axes.set_xticks([])
    return figure


@with_style
def coefficients(frame: pd.DataFrame, *, x_label: str) -> Figure:
    """Estimates with 95% intervals, one row per term (a forest plot); zero marked."""
    left = label_width(frame["term"]) + 0.3
    figure = new_figure(5.5 + left, 1.1 + 0.42 * len(frame), left=left, top=0.15)
    forest(figure.add_subplot(), frame, x_label=x_label)
    return figure


@with_style
def calibration(frame: pd.DataFrame) -> Figure:
    """Observed share at risk against the mean predicted probability, per bin (area by students)."""
    figure = new_figure(5.2, 4.6, left=0.85, top=0.15)
    calibration_curve(figure.add_subplot(), frame)
    return figure


@with_style
def bars(
    labels: pd.Series,
    values: pd.Series,
    *,
    x_label: str,
    hidden: pd.Series | None = None,
    k: int | None = None,
    error: pd.Series | None = None,
    fill: str = OKABE_ITO["blue"],
    value_format: str = "{:,.0f}",
    log: bool | None = None,
    width: float = 6.0,
) -> Figure:
    """Horizontal bars, largest on top, each labelled with its value; hidden rows are named with
    "hidden (< k)" and get no bar. `log` (default: when the values span more than 50 times) puts
    the axis on a log scale, so one dominant bar does not flatten the others. `width`: inches of
    the plotting area, the labels' room comes on top."""
    numbers = values.astype(float).fillna(-np.inf).to_numpy()
    # Ascending positions from the bottom; equal values keep their given order, top down.
    order = np.lexsort((-np.arange(len(numbers)), numbers))
    shut = np.zeros(len(numbers), dtype=bool) if hidden is None else hidden.to_numpy(dtype=bool)
    names = [f"{labels.iloc[i]} (hidden, < {k})" if shut[i] else str(labels.iloc[i]) for i in order]
    left, right = label_width(names) + 0.3, 0.7  # right: room for the value labels
    figure = new_figure(
        left + width + right, 0.9 + 0.38 * max(len(labels), 1), left=left, right=right, top=0.1
    )
    axes = figure.add_subplot()
    for position, index in enumerate(order):
        if shut[index]:
            continue
        xerr = None if error is None or pd.isna(error.iloc[index]) else float(error.iloc[index])
        bar = axes.barh(position, numbers[index], xerr=xerr, color=fill, capsize=3)
        text = value_format.format(numbers[index])
        if text.startswith("-") and not text.strip("-0.,"):  # "-0.000": a tiny negative, shown as zero
            text = text[1:]
        axes.bar_label(bar, labels=[text], padding=4, fontsize=10)
    shown = numbers[np.isfinite(numbers) & ~shut]
    if log is None:
        log = bool(len(shown)) and shown.min() > 0 and shown.max() > 50 * shown.min()
    if log:
        axes.set_xscale("log")
        plain_log_ticks(axes.xaxis)
        x_label += " (log scale)"
    _label_rows(axes, np.arange(len(order)), names, x_label)
    axes.set_ylim(-0.6, len(order) - 0.4)
    return figure


@with_style
def run_history(history: pd.DataFrame) -> Figure:
    """Records of each clean run: cleaned, quarantined and discarded without consent, stacked."""
    figure = new_figure(9.5, 4.2, bottom=0.95, top=0.5)
    axes = figure.add_subplot()
    x = np.arange(len(history))
    bottom = np.zeros(len(history))
    parts = (
        ("cleaned", "cleaned", OKABE_ITO["blue"]),
        ("quarantined", "quarantined", OKABE_ITO["vermillion"]),
        ("without_consent", "without consent (discarded)", GREY),
    )
    for column, label, fill in parts:
        values = history[column].fillna(0).to_numpy(dtype=float)
        axes.bar(x, values, bottom=bottom, color=fill, label=label, width=0.7)
        bottom += values
    labels = [f"{t:%d %b\n%H:%M}" for t in history["started_at"]]
    step = max(1, len(labels) // 12)
    axes.set_xticks(x[::step], labels[::step])
    axes.set_xlabel("Clean run (start, UTC)")
    axes.set_ylabel("Records")
    axes.yaxis.set_major_formatter("{x:,.0f}")
    axes.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncols=3)
    return figure
