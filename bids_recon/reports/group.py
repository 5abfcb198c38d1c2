"""The group report: every participant's metrics, their mean and spread, beside the published rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_recon import __version__
from bids_recon.naming import group_figures_dir
from bids_recon.reports.figures import encoding_display, plot_encoding_maps, plot_encoding_rois, plot_metrics
from bids_recon.reports.html import Figure, Section, render_report
from bids_recon.reports.metrics import comparison_text, metric_label, protocols_text, published_layout


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
    counts = pd.to_numeric(rows["n"], errors="coerce").dropna() if "n" in rows else pd.Series(dtype=float)
    return published_layout(means, comparison, spread=True, ours="group mean",
                            test_images=int(counts.max()) if len(counts) else None)


def build_group_report(output_dir: Path, table: pd.DataFrame, out_html: Path,
                       comparison: Mapping[str, Any] | None = None, extra_sections: Sequence[Section] = ()) -> Path:
    """Write ``group.html`` with a figure and tables of ``table`` (see ``collect_group_metrics``), then
    ``extra_sections`` (e.g. :func:`encoding_group_sections`).

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
            figure = plot_metrics(computed.assign(metric=labels),
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
                *notes, comparison_text(comparison) + " " + protocols_text()]),
            figures=figures,
            tables=[("The published table's layout: the group mean ± sd (n), then the published NSD averages "
                     "(– = not reported)", _layout(rows, stats, str(method), comparison)),
                    ("Across participants", stats.drop(columns=["metric"]).rename(columns={"label": "metric"})),
                    ("Per participant", wide)],
        ))
    sections += list(extra_sections)
    summary = {"Participants": str(table["participant_id"].nunique()),
               "Tasks": ", ".join(sorted(table["task"].astype(str).unique())), "bids_recon": __version__}
    return render_report("bids_recon group report", sections, Path(out_html), summary=summary)


def encoding_group_sections(output_dir: Path, groups: list[dict]) -> list[Section]:
    """One section per (task, space) of the encoding maps averaged over participants (see
    :func:`bids_recon.group.average_encoding_maps`): mean r maps on one colour scale, mean ROI scores,
    mean unique variance."""
    fig_dir = Path(output_dir) / group_figures_dir()
    sections = []
    for group in groups:
        maps, mask = group["maps"], group["mask"]
        if not maps:
            continue
        stem = f"task-{group['task']}_space-{group['space']}"
        display = encoding_display(mask, group["space"])
        where = (f"on nilearn's fsaverage5 surface (projected from {group['space']})" if display == "surface"
                 else "on axial slices")
        spaces = [m for m in group["spaces"] if (m, "r") in maps]
        figures = [Figure(plot_encoding_maps({m: maps[(m, "r")] for m in spaces}, mask,
                                             fig_dir / f"{stem}_desc-encoding_map.png", display=display),
                          f"Mean r over participants per feature space (positive values), one colour scale, {where}")]
        tables = []
        table = group["table"]
        if len(table):
            means = (table.groupby(["roi", "model"], sort=False)
                     .agg(participants=("participant_id", "nunique"), mean_r=("mean_r", "mean"),
                          sd_mean_r=("mean_r", "std"), fraction_significant=("fraction_significant", "mean"),
                          mean_unique_variance=("mean_unique_variance", "mean"))
                     .reset_index())
            figures.append(Figure(plot_encoding_rois(means, fig_dir / f"{stem}_desc-encodingrois_plot.svg"),
                                  "Mean over participants of each ROI's mean r; labels: mean percentage of voxels "
                                  "significant"))
            tables.append(("Encoding models per ROI, mean over participants", means))
        unique = {f"unique {m}": maps[(m, "uniquevariance")] for m in spaces if (m, "uniquevariance") in maps}
        if unique:
            figures.append(Figure(
                plot_encoding_maps(unique, mask, fig_dir / f"{stem}_desc-encodinguniquevariance_map.png",
                                   display=display, cmap="viridis", colorbar_label="unique R²"),
                f"Mean unique variance over participants (positive values), one colour scale, {where}"))
        sections.append(Section(
            title=f"Encoding models, task {group['task']}",
            text=(f"Encoding maps of {len(group['participants'])} participants ({', '.join(group['participants'])}) "
                  f"averaged voxel by voxel in {group['space']}, each voxel over the participants that modelled it."),
            figures=figures, tables=tables))
    return sections


def shared_space_section(table: pd.DataFrame, path: Path, params: Any) -> Section:
    """The group report's section on decoders shared across participants (``group --shared-space``)."""
    from bids_recon.group.shared import PUBLISHED_ONE_HOUR

    means = (table.groupby("method", sort=False)
             .agg(participants=("participant_id", "nunique"), mean_sessions=("sessions", "mean"),
                  mean_identification=("value", "mean"), sd=("value", "std"), test_stimuli=("n", "mean"))
             .reset_index())
    published = pd.DataFrame(PUBLISHED_ONE_HOUR).assign(data="different data (NSD, deep decoders): for scale only")
    text = (f"Each participant in turn was decoded by decoders trained in a shared space ({params.method}, "
            f"{params.n_components} dimensions at most) on the other participants' training trials and its own first "
            f"{params.train_sessions or 'all'} session(s), mapped into the space from the training stimuli the "
            "participants share (never the test stimuli), and by its own decoders. Scores: 2-way identification of "
            f"its test stimuli in the images' PCA space (chance 0.5). Table: {path.name}.")
    return Section(title="Decoders shared across participants", text=text,
                   tables=[("Mean over participants", means), ("Per participant", table),
                           ("Published results with about one hour of a new subject's data", published)])
