"""Visual regions of interest in the BOLD grid."""

from bids_recon.rois.atlas import (
    atlas_rois,
    build_rois,
    masks_from_atlas,
    roi_columns,
    roi_union,
    templateflow_file,
    user_roi,
)
from bids_recon.rois.masks import RoiSource, check_atlas_space, check_roi_sizes, source_uri
from bids_recon.rois.params import DEFAULT_ROI_LABELS, RoiParams, mask_specs

__all__ = ["DEFAULT_ROI_LABELS", "RoiParams", "RoiSource", "atlas_rois", "build_rois", "check_atlas_space",
           "check_roi_sizes", "mask_specs", "masks_from_atlas", "roi_columns", "roi_union", "source_uri",
           "templateflow_file", "user_roi"]
