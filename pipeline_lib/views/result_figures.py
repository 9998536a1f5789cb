"""The figure of each analysis result, by its key, for the process report: panels of `plots`
composed under the views' style. A figure reads only the document's tables, so it draws stored
results as well as fresh ones; a failed analysis has none."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline_lib.contract import result_keys as keys
from pipeline_lib.process.analysis.base import Z_95
from pipeline_lib.process.results import ResultDocument
from pipeline_lib.views.palette import GREY, OKABE_ITO
from pipeline_lib.views.plots import boxes, calibration_curve, forest, plain_log_ticks
from pipeline_lib.views.style import label_width, panel_row, with_style
from pipeline_lib.views.tables import required_frame as frame

# Inches left of a panel for numeric tick labels, and for those and an axis label. Fixed margins,
# not a layout engine: constrained layout draws each figure twice, 40% of the report's figure time.
_TICKS = 0.55
_AXIS_LABEL = 0.85
_SUPTITLE_SIZE = 14.0
# Inches a panel keeps beside names as long as an analyst writes them: its title and intervals.
_NAMED = 3.2


def plot(doc: ResultDocument) -> Figure | None:
    """The figure for a document, or None for a failed analysis (it has nothing to draw)."""
    if doc.status != "ok":
        return None
    draw = _FIGURES.get(doc.key)
    return with_style(draw)(doc) if draw else None


def _overall(doc: ResultDocument) -> Figure:
    summary = frame(doc, "statistics").dropna(subset=["median"])
    panels = max(len(summary), 1)
    title = "Distribution of each field (box: quartiles, whiskers: min and max, diamond: mean)"
    width = max(2.2 * panels, label_width([title], size=_SUPTITLE_SIZE) + 0.3)  # few fields: the title's
    fig, axes = panel_row(width, 3.2, [_TICKS] * panels, bottom=0.65, right=0.1, top=0.45)
    for ax, (_, row) in zip(axes, summary.iterrows(), strict=False):
        boxes(ax, pd.DataFrame([row]), [f"{row['variable']}\nn={int(row['n']):,}"], whiskers=True)
    fig.suptitle(title, fontsize=_SUPTITLE_SIZE)
    return fig


def _grouped(doc: ResultDocument) -> Figure:
    statistics = frame(doc, "statistics")
    by = doc.tables[0].label_columns[0]
    fig, axes = panel_row(10, 3.4, [_TICKS, _TICKS + 0.2], bottom=0.65, top=0.35)
    for ax, variable in zip(axes, ("math_score", "ses"), strict=True):
        rows = statistics[(statistics["variable"] == variable) & ~statistics["below_k"].astype(bool)]
        rows = rows.dropna(subset=["median"])
        labels = [f"{v}\nn={int(n):,}" for v, n in zip(rows[by], rows["n"], strict=True)]
        boxes(ax, rows, labels, whiskers=True)
        ax.set_title(f"{variable} by {by} (groups of k or more)")
    return fig


def _by_school(doc: ResultDocument) -> Figure:
    rows = frame(doc, "statistics")
    shown = rows[(rows["variable"] == "math_score") & ~rows["below_k"].astype(bool)]
    fig, (left, right) = panel_row(10, 3.4, [_AXIS_LABEL, _AXIS_LABEL + 0.2], bottom=0.6, top=0.35)
    left.hist(shown["mean"].dropna(), bins=min(40, max(5, len(shown) // 5)), color=OKABE_ITO["blue"])
    left.set(
        title=f"School mean math scores ({len(shown):,} schools)", xlabel="mean math score", ylabel="schools"
    )
    right.scatter(shown["n"], shown["mean"], s=8, alpha=0.6)
    right.set(
        title="School mean against school size", xlabel="students with a score", ylabel="mean math score"
    )
    right.set_xscale("log")
    plain_log_ticks(right.xaxis, subs=(1.0, 2.0, 5.0))  # sizes span few powers of ten
    return fig


def _correlations(doc: ResultDocument) -> Figure:
    pairs = frame(doc, "pairs")
    names = list(dict.fromkeys([*pairs["a"], *pairs["b"]]))
    matrix = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for _, p in pairs.iterrows():
        value = np.nan if p["r"] is None else p["r"]
        matrix.loc[p["a"], p["b"]] = matrix.loc[p["b"], p["a"]] = value
    # A square matrix, its names at 45 degrees below it, then the colour bar and its label.
    names_room, side, bar = label_width(names) + 0.3, 3.6, 0.2
    width = names_room + side + 0.3 + bar + 0.9
    fig, (ax, bar_ax) = panel_row(
        width, side + names_room * 0.75 + 0.15, [names_room, 0.3], ratios=[side, bar],
        bottom=names_room * 0.75, right=0.9, top=0.15,
    )  # fmt: skip
    ax.grid(False)
    image = ax.imshow(matrix.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            value = matrix.iat[i, j]
            if not math.isnan(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, cax=bar_ax, label="Pearson r")
    return fig


def _terms(doc: ResultDocument, name: str) -> pd.DataFrame:
    """The model terms but the intercept (on another scale), those with an estimate."""
    terms = frame(doc, name).dropna(subset=["estimate"])
    return terms[terms["term"] != "Intercept"]


def _ols(doc: ResultDocument) -> Figure:
    terms = _terms(doc, "coefficients")
    fig, (ax,) = panel_row(7, 3.6, [label_width(terms["term"]) + 0.3], bottom=0.6, top=0.35, min_panel=_NAMED)
    forest(ax, terms, x_label="estimate (95% CI)")
    ax.set_title("OLS coefficients (HC3)")
    return fig


def _null(doc: ResultDocument) -> Figure:
    variance = frame(doc, "variance")
    fig, (ax,) = panel_row(5, 3, [label_width(variance["component"]) + 0.3], bottom=0.6, top=0.35)
    ax.barh(variance["component"], variance["share"], color=[OKABE_ITO["orange"], OKABE_ITO["blue"]])
    ax.set(xlim=(0, 1), xlabel="share of the variance in math scores", title="Between and within schools")
    return fig


def _school_effects(doc: ResultDocument) -> Figure:
    terms = _terms(doc, "fixed_effects")
    lefts = [label_width(terms["term"]) + 0.3, _AXIS_LABEL + 0.3]
    fig, (left, right) = panel_row(12, 4.2, lefts, ratios=[1, 1.4], bottom=0.6, top=0.35, min_panel=_NAMED)
    forest(left, terms, x_label="estimate (95% CI)")
    left.set_title("Fixed effects")
    effects = (
        frame(doc, "random_effects").dropna(subset=["intercept"]).sort_values("intercept", ignore_index=True)
    )
    x = np.arange(len(effects))
    right.errorbar(
        x, effects["intercept"], yerr=Z_95 * effects["intercept_se"], fmt="o", ms=2, lw=0.6, capsize=0
    )
    right.axhline(0, color=GREY, lw=0.8)
    right.set(
        title=f"School intercepts with 95% intervals ({len(effects):,} schools)",
        xlabel="school (ranked)",
        ylabel="deviation in math score",
    )
    return fig


def _classification(doc: ResultDocument) -> Figure:
    importances = frame(doc, "importances").dropna(subset=["importance"]).iloc[::-1]
    lefts = [_AXIS_LABEL, label_width(importances["feature"]) + 0.4, _TICKS + 0.2]
    fig, panels = panel_row(13, 3.8, lefts, bottom=0.6, right=0.45, top=0.35, min_panel=_NAMED)
    calibration_ax, importance_ax, folds_ax = panels
    calibration_curve(calibration_ax, frame(doc, "calibration"))
    calibration_ax.set_title("Calibration (out of fold)")
    importance_ax.barh(importances["feature"], importances["importance"], xerr=importances["sd"])
    importance_ax.set(title="Permutation importance", xlabel="drop in ROC AUC")
    importance_ax.xaxis.set_major_locator(MaxNLocator(5))
    folds = frame(doc, "folds")
    x = np.arange(len(folds))
    folds_ax.bar(x - 0.2, folds["auc"], 0.4, label="model")
    folds_ax.bar(x + 0.2, folds["baseline_auc"], 0.4, label="majority baseline")
    folds_ax.set_xticks(x, [f"fold {f}" for f in folds["fold"]])
    folds_ax.set(title="ROC AUC per school-grouped fold", ylim=(0, 1))
    folds_ax.legend(loc="lower right")
    return fig


def _regression(doc: ResultDocument) -> Figure:
    folds = frame(doc, "folds")
    fig, (ax,) = panel_row(7, 3.4, [_AXIS_LABEL], bottom=0.45, top=0.35)
    x = np.arange(len(folds))
    ax.bar(x - 0.2, folds["rmse"], 0.4, label="model")
    ax.bar(x + 0.2, folds["baseline_rmse"], 0.4, label="mean-only baseline")
    ax.set_xticks(x, [f"fold {f}" for f in folds["fold"]])
    ax.set(title="RMSE per school-grouped fold", ylabel="RMSE (math score points)")
    ax.legend(loc="lower right")
    return fig


_FIGURES: dict[str, Callable[[ResultDocument], Figure]] = {
    keys.DESCRIPTIVES_OVERALL: _overall,
    keys.DESCRIPTIVES_BY_SECTOR: _grouped,
    keys.DESCRIPTIVES_BY_SEX: _grouped,
    keys.DESCRIPTIVES_BY_MINORITY: _grouped,
    keys.DESCRIPTIVES_BY_SCHOOL: _by_school,
    keys.CORRELATIONS: _correlations,
    keys.OLS: _ols,
    keys.MIXEDLM_NULL: _null,
    keys.MIXEDLM_SCHOOL_EFFECTS: _school_effects,
    keys.AT_RISK: _classification,
    keys.PREDICTION: _regression,
}
