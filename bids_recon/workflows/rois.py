"""The ROI stage of a participant: visual ROIs in the BOLD grid, from the atlas or the user's masks.

``inputnode.mask_file``: the brain mask. ``outputnode``: ``roi_files`` (ROI name -> mask), ``out_files`` (the
derivatives written). Its ``__desc__`` is :func:`methods`.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_recon.bids.derivatives import SubjectOutputs
from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.interfaces.stages import Rois
from bids_recon.params import to_dict
from bids_recon.rois.atlas import subject_path
from bids_recon.rois.selection import parse_voxel_selection
from bids_recon.workflows.betas import grid_sidecar
from bids_recon.workflows.utils import gather, pick, pick_extra, sink


def methods(config: Config) -> str:
    """The methods paragraph of the ROI stage, from its settings."""
    rois = config.workflow.rois
    atlas = "; ".join(f"{name}: {', '.join(labels)}" for name, labels in rois.labels.items()
                      if name not in rois.user_masks)
    user = ", ".join(f"{k} ({v})" for k, v in rois.user_masks.items())
    selection = parse_voxel_selection(rois.voxel_selection)
    kept = f" Within each ROI, only {selection.describe()} were kept." if selection else ""
    if not atlas:
        return f"Regions of interest came from user masks {user}, resampled to the BOLD grid.{kept}"
    return (f"Regions of interest came from the TemplateFlow {rois.atlas} atlas ({rois.atlas_desc}) resampled to "
            f"the BOLD grid ({atlas})" + (f" and from user masks {user}" if user else "") + f".{kept}")


def init_rois_wf(config: Config, names: SubjectOutputs, name: str = "rois_wf",
                 inputs: SubjectInputs | None = None) -> pe.Workflow:
    """Build the ROI stage of one participant (see the module docstring)."""
    roi_cfg, out_dir = config.workflow.rois, Path(config.execution.output_dir)
    wf = pe.Workflow(name=name)
    wf.__desc__ = methods(config)
    inputnode = pe.Node(niu.IdentityInterface(fields=["mask_file", "betas", "trials"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["roi_files", "out_files"]), name="outputnode")
    rois = pe.Node(Rois(params=to_dict(roi_cfg), subject=inputs.subject if inputs else ""), name="rois")
    wf.connect([(inputnode, rois, [("mask_file", "mask_file")]), (rois, outputnode, [("roi_files", "roi_files")])])
    if parse_voxel_selection(roi_cfg.voxel_selection) is not None:  # rated by the betas' reliability
        wf.connect([(inputnode, rois, [("betas", "betas"), ("trials", "trials")])])
    written = []
    for roi in roi_cfg.names:
        atlas = roi_cfg.atlas_of(roi)
        ds_roi = sink(out_dir, names.sink("roi_mask", label=roi, desc=atlas), f"ds_roi_{roi}", {
            "Type": "ROI", "Atlas": atlas, "AtlasLabels": roi_cfg.labels.get(roi, []), "Template": roi_cfg.template,
            "Resampling": "nearest neighbour to the BOLD grid", **grid_sidecar(config, inputs),
            "Sources": [subject_path(roi_cfg.user_masks[roi], inputs.subject if inputs else None)]
            if roi in roi_cfg.user_masks else
            [f"templateflow:tpl-{roi_cfg.template}_res-{roi_cfg.resolution:02d}_atlas-{roi_cfg.atlas}"
             f"_desc-{roi_cfg.atlas_desc}_dseg.nii.gz"]})
        wf.connect(rois, (("roi_files", pick, roi)), ds_roi, "in_file")
        wf.connect(rois, (("roi_sidecars", pick_extra, roi, ".json")), ds_roi, "extra_files")
        written.append((ds_roi, "out_file"))
    out_files = gather(wf, written, "merge_outputs")
    wf.connect(out_files, "out", outputnode, "out_files")
    return wf
