"""The ROI stage of a participant: visual ROIs in the BOLD grid, from the atlas or the user's masks.

``inputnode.mask_file``: the brain mask. ``outputnode``: ``roi_files`` (ROI name -> mask), ``out_files`` (the
derivatives written). Its ``__desc__`` is :func:`methods`.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.interfaces.stages import Rois
from bids_recon.naming import SubjectOutputs
from bids_recon.params import to_dict
from bids_recon.rois.labels import split_roi_spec
from bids_recon.rois.params import mask_specs
from bids_recon.rois.selection import parse_voxel_selection
from bids_recon.workflows.betas import grid_sidecar
from bids_recon.workflows.utils import gather, pick, pick_extra, sink


def methods(config: Config) -> str:
    """The methods paragraph of the ROI stage, from its settings."""
    rois = config.workflow.rois
    atlas = "; ".join(f"{name}: {', '.join(rois.labels[name])}" for name in rois.atlas_names)
    user = ", ".join(_describe_user(name, value) for name, value in rois.user_masks.items())
    selection = parse_voxel_selection(rois.voxel_selection)
    kept = f" Within each ROI, only {selection.describe()} were kept." if selection else ""
    if not atlas:
        return (f"Regions of interest came from user masks ({user}), resampled (nearest neighbour) to the BOLD grid "
                f"and restricted to the brain mask.{kept}")
    return (f"Regions of interest came from the TemplateFlow {rois.atlas} atlas ({rois.atlas_desc}, "
            f"{rois.template}) resampled to the BOLD grid ({atlas})" + (f" and from user masks ({user})" if user else
                                                                        "") + f".{kept}")


def _describe_user(name: str, value: str | list[str]) -> str:
    files = [Path(split_roi_spec(spec)[0]).name + (f":{split_roi_spec(spec)[1]}" if split_roi_spec(spec)[1] else "")
             for spec in mask_specs(value)]
    return f"{name}: {files[0]}" if len(files) == 1 else f"{name}: the union of {', '.join(files)}"


def dataset_roots(config: Config) -> dict[str, str]:
    """The datasets a user mask may lie in (named by a BIDS URI in its sidecar): the raw dataset and the fMRIPrep
    derivatives or the imported betas, as ``dataset_description.json`` links them; the deepest root first."""
    from bids_recon.glm.importers import parse_betas

    ex = config.execution
    roots = {"raw": ex.bids_dir}
    spec = parse_betas(config.workflow.glm.betas)
    if spec is not None:
        roots["betas"] = str(spec.path)
    elif "fmriprep" in ex.derivatives:
        roots["fmriprep"] = ex.derivatives["fmriprep"]
    ordered = sorted(roots.items(), key=lambda item: -len(Path(item[1]).absolute().parts))
    return {name: str(Path(root).absolute()) for name, root in ordered if root}


def init_rois_wf(config: Config, names: SubjectOutputs, name: str = "rois_wf",
                 inputs: SubjectInputs | None = None) -> pe.Workflow:
    """Build the ROI stage of one participant (see the module docstring)."""
    roi_cfg, out_dir = config.workflow.rois, Path(config.execution.output_dir)
    wf = pe.Workflow(name=name)
    wf.__desc__ = methods(config)
    inputnode = pe.Node(niu.IdentityInterface(fields=["mask_file", "betas", "trials"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["roi_files", "out_files"]), name="outputnode")
    rois = pe.Node(Rois(params=to_dict(roi_cfg), subject=inputs.subject if inputs else "",
                        space=config.workflow.space or "", datasets=dataset_roots(config)), name="rois")
    wf.connect([(inputnode, rois, [("mask_file", "mask_file")]), (rois, outputnode, [("roi_files", "roi_files")])])
    if parse_voxel_selection(roi_cfg.voxel_selection) is not None:  # rated by the betas' reliability
        wf.connect([(inputnode, rois, [("betas", "betas"), ("trials", "trials")])])
    written = []
    for roi in roi_cfg.names:
        atlas = roi_cfg.atlas_of(roi)
        # the node's JSON says where the ROI came from (atlas, or the user's files with their sha256 and labels)
        ds_roi = sink(out_dir, names.sink("roi_mask", label=roi, desc=atlas), f"ds_roi_{roi}",
                      {"Type": "ROI", "Description": f"Region of interest '{roi}' in the BOLD grid, inside the "
                                                    "brain mask" + (f" (from the {atlas} atlas)" if atlas else ""),
                       **grid_sidecar(config, inputs)})
        wf.connect(rois, (("roi_files", pick, roi)), ds_roi, "in_file")
        wf.connect(rois, (("roi_sidecars", pick_extra, roi, ".json")), ds_roi, "extra_files")
        written.append((ds_roi, "out_file"))
    out_files = gather(wf, written, "merge_outputs")
    wf.connect(out_files, "out", outputnode, "out_files")
    return wf
