"""Visual regions of interest in the BOLD grid."""

from bids_recon.rois.atlas import (
    atlas_rois,
    build_rois,
    check_roi_sizes,
    masks_from_atlas,
    roi_columns,
    roi_union,
    templateflow_file,
    user_roi,
)
from bids_recon.rois.params import DEFAULT_ROI_LABELS, RoiParams

__all__ = ["DEFAULT_ROI_LABELS", "RoiParams", "atlas_rois", "build_rois", "check_roi_sizes", "masks_from_atlas",
           "roi_columns", "roi_union", "templateflow_file", "user_roi"]
