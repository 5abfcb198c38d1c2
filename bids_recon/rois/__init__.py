"""Visual regions of interest in the BOLD grid."""

from bids_recon.rois.atlas import (
    atlas_rois,
    build_rois,
    check_roi_sizes,
    masks_from_atlas,
    templateflow_file,
    user_roi,
)

__all__ = ["atlas_rois", "build_rois", "check_roi_sizes", "masks_from_atlas", "templateflow_file", "user_roi"]
