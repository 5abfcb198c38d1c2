"""The beta stage of a participant whose betas are imported (``--betas FORMAT=PATH``) instead of estimated.

The same outputs as :mod:`bids_recon.workflows.betas` (``outputnode``: ``betas``, ``trials``, ``mask_file``,
``out_files``), so that ROIs, decoders, generators and the report are unchanged: the mask the betas are read in
(``import_mask``), one node per session reading its betas a block of trials at a time (``import_ses*``), the test
split (``import_split``), then the GLM stage's own ``combine_runs`` (session z-scoring, repeats, noise ceiling). Its
``__desc__`` (:func:`methods`) says where the betas came from.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_recon.bids.layout import SubjectInputs
from bids_recon.config import Config
from bids_recon.design.split import describe_split
from bids_recon.glm.importers import IMPORTERS, parse_betas
from bids_recon.interfaces.glm import CombineRuns
from bids_recon.interfaces.importers import ImportMask, ImportSession, ImportSplit
from bids_recon.naming import SubjectOutputs
from bids_recon.params import to_dict
from bids_recon.workflows.betas import connect_outputs, grid_sidecar, subject_map_sinks
from bids_recon.workflows.utils import as_extra, gather, read_outputs, sink


def methods(config: Config, inputs: SubjectInputs) -> str:
    """The methods paragraph of an import, from the settings and what the import holds."""
    spec = parse_betas(config.workflow.glm.betas)
    plan = inputs.imported
    importer = IMPORTERS[spec.format]
    zscore = ("Betas were z-scored per voxel within each session" if config.workflow.glm.zscore_per_session else
              "Betas were kept in their units (not z-scored)")
    voxels = ("only the voxels of the regions of interest were read" if spec.options.get("voxels") == "rois" else
              "the voxels of the betas' brain mask were read")
    return (f"Single-trial betas were not estimated here but imported: {importer.summary}, from {spec.path} "
            f"({plan.n_trials} trials in {len(plan.sessions)} session(s): {', '.join(plan.session_labels)}; scale: "
            f"{plan.scale_note}; units after scaling: {plan.units}); {voxels}. {zscore}; the noise ceiling (NCSNR, "
            "Allen et al. 2022) was computed from repeated stimuli. "
            + describe_split(config.workflow.stimuli.test_min_repeats, config.workflow.stimuli.test_split))


def init_import_wf(config: Config, inputs: SubjectInputs, names: SubjectOutputs,
                   name: str = "betas_wf") -> pe.Workflow:
    """Build the import of one participant's betas (see the module docstring)."""
    ex, glm_cfg, stim_cfg = config.execution, config.workflow.glm, config.workflow.stimuli
    out_dir = Path(ex.output_dir)
    plan = inputs.imported
    grid = grid_sidecar(config, inputs)
    task = [ex.task_id] if isinstance(ex.task_id, str) else list(ex.task_id or [])
    common = dict(betas=glm_cfg.betas, subject=inputs.subject, bids_dir=ex.bids_dir,
                  stimuli=to_dict(stim_cfg.rows_only()), task=task)
    wf = pe.Workflow(name=name)
    wf.__desc__ = methods(config, inputs)
    outputnode = pe.Node(niu.IdentityInterface(fields=["betas", "trials", "mask_file", "out_files"]),
                         name="outputnode")
    mask = pe.Node(ImportMask(sessions=plan.session_labels, rois=to_dict(config.workflow.rois), **common),
                   name="import_mask")
    sources = [str(p) for p in plan.files()]
    ds_mask = sink(out_dir, names.sink("brain_mask"), "ds_brain_mask", {
        "Type": "Brain", "Sources": sources[-1:] if plan.mask_file is not None else sources[:1],
        "Description": "Voxels of the imported betas that were read", **grid})
    wf.connect(mask, "out_mask", ds_mask, "in_file")
    written = [(ds_mask, "out_file")]

    sessions = []
    for session in plan.sessions:
        files = list(dict.fromkeys(str(f.path) for f in session.files))
        node = pe.Node(ImportSession(session=session.label, beta_files=files, **common),
                       name=f"import_ses{_node_label(session.label)}", mem_gb=0.5)
        wf.connect(mask, "out_mask", node, "mask_file")
        sessions.append(node)
    split = pe.Node(ImportSplit(stimuli=to_dict(stim_cfg), bids_dir=ex.bids_dir), name="import_split")
    wf.connect([(gather(wf, [(n, "trials") for n in sessions], "merge_session_trials"), split, [("out", "trials")]),
                (gather(wf, [(n, "metadata") for n in sessions], "merge_metadata"), split, [("out", "metadata")])])
    combine = pe.Node(CombineRuns(stimuli=to_dict(stim_cfg), zscore=glm_cfg.zscore_per_session, bids_dir=ex.bids_dir,
                                  split_set=True, need_training=not config.workflow.decoding.decoders_from),
                      name="combine_runs")
    wf.connect([(gather(wf, [(n, "betas") for n in sessions], "merge_betas"), combine, [("out", "betas")]),
                (split, combine, [("trials", "trials")]), (mask, combine, [("out_mask", "mask_file")])])
    ds_trials = sink(out_dir, names.sink("trials"), "ds_trials", {
        "Description": "All trials of the participant in the row order of the decoders' inputs, from imported "
                       "betas; 'repeat' counts earlier presentations. "
                       + describe_split(stim_cfg.test_min_repeats, stim_cfg.test_split),
        "StimulusResolver": stim_cfg.resolver, "StimulusColumn": stim_cfg.column or "the resolver's own",
        "Sources": sources})
    wf.connect([(combine, ds_trials, [("trials", "in_file")]),
                (mask, ds_trials, [(("provenance", as_extra, ".json"), "extra_files")])])
    written.append((ds_trials, "out_file"))
    written += subject_map_sinks(wf, combine, out_dir, names,
                                 {"Estimator": f"imported ({parse_betas(glm_cfg.betas).format})", **grid,
                                  "Sources": [*sources, *read_outputs(names, inputs)]})
    connect_outputs(wf, combine, mask, gather(wf, written, "merge_outputs"), outputnode)
    return wf


def _node_label(label: str) -> str:
    return "".join(ch for ch in str(label) if ch.isalnum()) or "all"


__all__ = ["init_import_wf", "methods"]
