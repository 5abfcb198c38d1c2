"""The group report: every participant's metrics against chance."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bids_recon import __version__
from bids_recon.bids.derivatives import group_figures_dir
from bids_recon.reports.figures import plot_group_metrics
from bids_recon.reports.html import Figure, Section, render_report


def build_group_report(output_dir: Path, table: pd.DataFrame, out_html: Path) -> Path:
    """Write ``group.html`` with a figure and tables of ``table`` (see ``collect_group_metrics``)."""
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
    summary = {"Participants": str(table["participant_id"].nunique()),
               "Tasks": ", ".join(sorted(table["task"].astype(str).unique())), "bids_recon": __version__}
    return render_report("bids_recon group report", sections, Path(out_html), summary=summary)
