"""Plots of result documents (matplotlib), for the process report and the dashboards: they
read only a document's tables, so they draw stored results as well as fresh ones."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline_lib.process.results import ResultDocument

Z_95 = 1.959963984540054


def frame(doc: ResultDocument, name: str) -> pd.DataFrame:
    """A table of `doc` as a DataFrame."""
    found = next((t for t in doc.tables if t.name == name), None)
    if found is None:
        raise KeyError(f"{doc.key} has no table {name!r}; it has {[t.name for t in doc.tables]}")
    return pd.DataFrame(found.rows, columns=found.columns)


def plot(doc: ResultDocument) -> Figure | None:
    """The figure for a document, or None for a failed analysis (it has nothing to draw)."""
    if doc.status != "ok":
        return None
    draw = _PLOTS.get(doc.key) or _PLOTS.get(f"{doc.analysis}:*")
    return draw(doc) if draw else None


def _boxes(ax, rows: pd.DataFrame, labels: list[str]) -> None:
    """Box plots drawn from stored quartiles (whiskers at min and max)."""
    stats = [
        {
            "label": label,
            "whislo": r["min"],
            "q1": r["q1"],
            "med": r["median"],
            "q3": r["q3"],
            "whishi": r["max"],
            "mean": r["mean"],
        }
        for label, (_, r) in zip(labels, rows.iterrows(), strict=True)
    ]
    if stats:
        ax.bxp(stats, showfliers=False, showmeans=True)


def _overall(doc: ResultDocument) -> Figure:
    summary = frame(doc, "statistics").dropna(subset=["median"])
    fig = Figure(figsize=(2.2 * max(len(summary), 1), 3.2), layout="constrained")
    axes = fig.subplots(1, max(len(summary), 1), squeeze=False)[0]
    for ax, (_, row) in zip(axes, summary.iterrows(), strict=False):
        _boxes(ax, pd.DataFrame([row]), [f"{row['variable']}\nn={int(row['n']):,}"])
    fig.suptitle("Distribution of each field (box: quartiles, whiskers: min and max, triangle: mean)")
    return fig


def _grouped(doc: ResultDocument) -> Figure:
    statistics = frame(doc, "statistics")
    by = doc.tables[0].label_columns[0]
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, variable in zip(axes, ("math_score", "ses"), strict=True):
        rows = statistics[(statistics["variable"] == variable) & ~statistics["below_k"].astype(bool)]
        rows = rows.dropna(subset=["median"])
        _boxes(ax, rows, [f"{v}\nn={int(n):,}" for v, n in zip(rows[by], rows["n"], strict=True)])
        ax.set_title(f"{variable} by {by} (groups of k or more)")
    return fig


def _by_school(doc: ResultDocument) -> Figure:
    rows = frame(doc, "statistics")
    shown = rows[(rows["variable"] == "math_score") & ~rows["below_k"].astype(bool)]
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.hist(shown["mean"].dropna(), bins=min(40, max(5, len(shown) // 5)), color="#4c72b0")
    left.set(
        title=f"School mean math scores ({len(shown):,} schools)", xlabel="mean math score", ylabel="schools"
    )
    right.scatter(shown["n"], shown["mean"], s=8, alpha=0.6)
    right.set(
        title="School mean against school size", xlabel="students with a score", ylabel="mean math score"
    )
    right.set_xscale("log")
    return fig


def _correlations(doc: ResultDocument) -> Figure:
    pairs = frame(doc, "pairs")
    names = list(dict.fromkeys([*pairs["a"], *pairs["b"]]))
    matrix = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for _, p in pairs.iterrows():
        value = np.nan if p["r"] is None else p["r"]
        matrix.loc[p["a"], p["b"]] = matrix.loc[p["b"], p["a"]] = value
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            value = matrix.iat[i, j]
            if not math.isnan(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="Pearson r")
    return fig


def _forest(ax, terms: pd.DataFrame, title: str) -> None:
    terms = terms[terms["term"] != "Intercept"].iloc[::-1]
    y = np.arange(len(terms))
    ax.errorbar(
        terms["estimate"],
        y,
        xerr=[terms["estimate"] - terms["ci_low"], terms["ci_high"] - terms["estimate"]],
        fmt="o",
        capsize=3,
    )
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y, terms["term"])
    ax.set(title=title, xlabel="estimate (95% CI)")


def _ols(doc: ResultDocument) -> Figure:
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    _forest(fig.subplots(), frame(doc, "coefficients").dropna(subset=["estimate"]), "OLS coefficients (HC3)")
    return fig


def _null(doc: ResultDocument) -> Figure:
    variance = frame(doc, "variance")
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.subplots()
    ax.barh(variance["component"], variance["share"], color=["#dd8452", "#4c72b0"])
    ax.set(xlim=(0, 1), xlabel="share of the variance in math scores", title="Between and within schools")
    return fig


def _school_effects(doc: ResultDocument) -> Figure:
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.4])
    _forest(left, frame(doc, "fixed_effects").dropna(subset=["estimate"]), "Fixed effects")
    effects = (
        frame(doc, "random_effects").dropna(subset=["intercept"]).sort_values("intercept", ignore_index=True)
    )
    x = np.arange(len(effects))
    right.errorbar(
        x, effects["intercept"], yerr=Z_95 * effects["intercept_se"], fmt="o", ms=2, lw=0.6, capsize=0
    )
    right.axhline(0, color="grey", lw=0.8)
    right.set(
        title=f"School intercepts with 95% intervals ({len(effects):,} schools)",
        xlabel="school (ranked)",
        ylabel="deviation in math score",
    )
    return fig


def _classification(doc: ResultDocument) -> Figure:
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    calibration_ax, importance_ax, folds_ax = fig.subplots(1, 3)
    calibration = frame(doc, "calibration").dropna(subset=["mean_predicted"])
    calibration_ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    calibration_ax.plot(calibration["mean_predicted"], calibration["observed_rate"], "o-")
    calibration_ax.set(
        title="Calibration (out of fold)",
        xlabel="predicted probability",
        ylabel="observed share",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    importances = frame(doc, "importances").dropna(subset=["importance"]).iloc[::-1]
    importance_ax.barh(importances["feature"], importances["importance"], xerr=importances["sd"])
    importance_ax.set(title="Permutation importance", xlabel="drop in ROC AUC")
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
    fig = Figure(figsize=(7, 3.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(folds))
    ax.bar(x - 0.2, folds["rmse"], 0.4, label="model")
    ax.bar(x + 0.2, folds["baseline_rmse"], 0.4, label="mean-only baseline")
    ax.set_xticks(x, [f"fold {f}" for f in folds["fold"]])
    ax.set(title="RMSE per school-grouped fold", ylabel="RMSE (math score points)")
    ax.legend(loc="lower right")
    return fig


_PLOTS: dict[str, Callable[[ResultDocument], Figure]] = {
    "descriptives:overall": _overall,
    "descriptives:by_school": _by_school,
    "descriptives:*": _grouped,
    "correlations:numeric": _correlations,
    "ols:math_score": _ols,
    "mixedlm:null": _null,
    "mixedlm:school_effects": _school_effects,
    "classification:at_risk": _classification,
    "regression:math_score": _regression,
}
