"""The group level's computation over the participants' outputs in a derivatives dataset.

:mod:`~bids_recon.group.metrics`: every participant's metrics tables gathered into one, and whether their runs are
comparable with the published rows. :mod:`~bids_recon.group.maps`: the participants' encoding maps averaged voxel
by voxel in their template space. :func:`bids_recon.workflows.group.run_group` orchestrates them and the report.
"""

from bids_recon.group.maps import average_encoding_maps, mean_over_participants, on_grid
from bids_recon.group.metrics import collect_group_metrics, published_comparison

__all__ = ["average_encoding_maps", "collect_group_metrics", "mean_over_participants", "on_grid",
           "published_comparison"]
