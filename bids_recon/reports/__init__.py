"""HTML reports: figures (``figures``) and the self-contained page (``html``)."""

from bids_recon.reports.figures import (
    plot_cv_scores,
    plot_design_matrix,
    plot_metrics,
    plot_reconstruction_grid,
    plot_roi_overlay,
)
from bids_recon.reports.html import Figure, Section, render_report

__all__ = [
    "Figure",
    "Section",
    "plot_cv_scores",
    "plot_design_matrix",
    "plot_metrics",
    "plot_reconstruction_grid",
    "plot_roi_overlay",
    "render_report",
]
