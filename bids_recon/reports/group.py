"""The group report: every participant's metrics against chance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bids_recon import __version__
from bids_recon.bids.derivatives import group_figures_dir
from bids_recon.reports.figures import encoding_display, plot_encoding_maps, plot_encoding_rois, plot_group_metrics
from bids_recon.reports.html import Figure, Section, render_report


def build_group_report(output_dir: Path, table: pd.DataFrame, out_html: Path,
                       extra_sections: Sequence[Section] = ()) -> Path:
    """Write ``group.html`` with a figure and tables of ``table`` (see ``collect_group_metrics``), then
    ``extra_sections`` (e.g. :func:`encoding_group_sections`)."""
    fig_dir = Path(output_dir) / group_figures_dir()
    fig_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for (task, method), rows in table.groupby(["task", "method"]):
        figure = plot_group_metrics(rows, fig_dir / f"task-{task}_desc-{method}_metrics.svg")
        stats = (rows.groupby("metric", sort=False)
                 .agg(participants=("value", "size"), mean=("value", "mean"), sd=("value", "std"),
                      minimum=("value", "min"), maximum=("value", "max"), chance=("chance", "mean"))
                 .reset_index())
        wide = rows.pivot_table(index="participant_id", columns="metric", values="value").reset_index()
        wide.columns.name = None
        sections.append(Section(
            title=f"Task {task}, {method} generator",
            text=(f"{rows['participant_id'].nunique()} participants. Identification metrics are fractions "
                  "(chance 0.5); the chance level of a similarity metric is its mean over mismatched pairs."),
            figures=[Figure(figure, "Each dot is a participant; bars are means; dashed lines are chance")],
            tables=[("Across participants", stats), ("Per participant", wide)],
        ))
    sections += list(extra_sections)
    summary = {"Participants": str(table["participant_id"].nunique()),
               "Tasks": ", ".join(sorted(table["task"].astype(str).unique())), "bids_recon": __version__}
    return render_report("bids_recon group report", sections, Path(out_html), summary=summary)


def encoding_group_sections(output_dir: Path, groups: list[dict]) -> list[Section]:
    """One section per (task, space) of the encoding maps averaged over participants (see
    :func:`bids_recon.workflows.group.average_encoding_maps`): mean r maps on one colour scale, mean ROI scores,
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
