"""The group report: every participant's metrics, their mean and spread, beside the published rows."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_recon import __version__
from bids_recon.bids.derivatives import group_figures_dir
from bids_recon.reports.figures import plot_group_metrics
from bids_recon.reports.html import Figure, Section, render_report
from bids_recon.reports.metrics import comparison_text, metric_label, published_layout


def _computed(rows: pd.DataFrame) -> pd.Series:
    ok = rows["status"] == "ok" if "status" in rows else pd.Series(True, index=rows.index)
    return ok & np.isfinite(rows["value"].astype(float))


def group_statistics(rows: pd.DataFrame) -> pd.DataFrame:
    """Per metric of one method: the mean across participants with its spread.

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per (participant, metric): ``participant_id, metric, value, chance`` (and ``status``: rows that
        are not ``ok`` are left out of the statistics).

    Returns
    -------
    pandas.DataFrame
        One row per metric (in table order): ``metric`` (id), ``label``, ``participants`` (with a computed value),
        ``mean``, ``sd`` (ddof 1; NaN for one participant), ``minimum``, ``maximum``, ``chance`` (mean),
        ``not computed`` (participants without a value).
    """
    order = list(dict.fromkeys(rows["metric"].astype(str)))
    ok = rows[_computed(rows)]
    stats = (ok.groupby("metric", sort=False)
             .agg(participants=("value", "size"), mean=("value", "mean"), sd=("value", "std"),
                  minimum=("value", "min"), maximum=("value", "max"), chance=("chance", "mean"))
             .reindex(order))
    stats["participants"] = stats["participants"].fillna(0).astype(int)
    stats["not computed"] = rows.groupby("metric", sort=False)["participant_id"].nunique().reindex(order) \
        - stats["participants"]
    stats = stats.reset_index()
    stats.insert(1, "label", [metric_label(m) for m in stats["metric"]])
    return stats


def _layout(rows: pd.DataFrame, stats: pd.DataFrame, method: str, comparison: Mapping[str, Any] | None) -> pd.DataFrame:
    first = rows.iloc[0]
    means = stats.assign(method=method, value=stats["mean"], status=np.where(stats["participants"] > 0, "ok",
                                                                            "not computed"),
                         samples=first.get("samples", 1), selection=first.get("selection", "single"))
    return published_layout(means, comparison, spread=True, ours="group mean")


def build_group_report(output_dir: Path, table: pd.DataFrame, out_html: Path,
                       comparison: Mapping[str, Any] | None = None) -> Path:
    """Write ``group.html`` with a figure and tables of ``table`` (see ``collect_group_metrics``).

    Parameters
    ----------
    comparison : mapping, optional
        Whether the participants' runs are comparable with the published rows (``Comparable``, ``Reason``, as
        in the metrics sidecars); without it they are marked 'different data'.
    """
    fig_dir = Path(output_dir) / group_figures_dir()
    fig_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for (task, method), rows in table.groupby(["task", "method"], sort=False):
        stats = group_statistics(rows)
        computed = rows[_computed(rows)]
        figures = []
        if not computed.empty:
            labels = computed["metric"].map(metric_label).str.replace(" (", "\n(", regex=False)
            figure = plot_group_metrics(computed.assign(metric=labels),
                                        fig_dir / f"task-{task}_desc-{method}_metrics.svg")
            figures.append(Figure(figure, "Each dot is a participant; bars are means; dashed lines are chance"))
        wide = rows.assign(metric=rows["metric"].map(metric_label)).pivot_table(
            index="participant_id", columns="metric", values="value", sort=False).reset_index()
        wide.columns.name = None
        skipped = stats[stats["not computed"] > 0]
        reasons = rows[~_computed(rows)].groupby("metric")["note"].first() if "note" in rows else {}
        notes = [f"{label}: not computed for {missing} of {missing + n} participant(s)"
                 + (f" ({reasons[m]})" if m in reasons and reasons[m] else "") for m, label, missing, n
                 in zip(skipped["metric"], skipped["label"], skipped["not computed"], skipped["participants"],
                        strict=True)]
        sections.append(Section(
            title=f"Task {task}, {method}",
            text="\n\n".join([
                f"{rows['participant_id'].nunique()} participants. Each metric's mean across the participants "
                "whose value was computed, with the standard deviation across participants (sd) and their number "
                "(n). Identification and retrieval in %, chance 50% for identification; the chance level of a "
                "similarity metric or distance is its mean over mismatched pairs.",
                *notes, comparison_text(comparison)]),
            figures=figures,
            tables=[("The published table's layout: the group mean ± sd (n), then the published NSD averages "
                     "(– = not reported)", _layout(rows, stats, str(method), comparison)),
                    ("Across participants", stats.drop(columns=["metric"]).rename(columns={"label": "metric"})),
                    ("Per participant", wide)],
        ))
    summary = {"Participants": str(table["participant_id"].nunique()),
               "Tasks": ", ".join(sorted(table["task"].astype(str).unique())), "bids_recon": __version__}
    return render_report("bids_recon group report", sections, Path(out_html), summary=summary)
