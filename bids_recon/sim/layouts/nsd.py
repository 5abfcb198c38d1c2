"""``--layout nsd``: NSD as it downloads (``OUT/nsddata_rawdata`` beside ``nsddata_stimuli`` and ``nsddata``).

- events: ``onset``, ``duration``, ``trial_number``, ``73k_id`` (1-based), ``10k_id``; task ``nsdcore``, sessions
  ``nsd01``...
- ``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``: dataset ``imgBrick`` (n_images, size, size, 3) uint8, a small
  stand-in for the 73000 x 425 x 425 x 3 original (h5py), with rows nobody saw;
- ``nsddata/experiments/nsd/nsd_stim_info_merged.csv`` (index, ``cocoId``, ``cocoSplit``, ``cropBox``, ``loss``,
  ``nsdId`` 0-based, ``flagged``, ``BOLD5000``, ``shared1000``, ``subjectN``, ``subjectN_rep0..2``) and
  ``nsd_expdesign.mat`` (``sharedix``, ``subjectim``, ``masterordering``);
- COCO caption files in ``nsddata_stimuli/stimuli/nsd/annotations/`` (where NSD's nsd_access puts them);
- NSD's own single-trial betas of every subject (:mod:`bids_recon.sim.betas`, ground truth in
  ``sub-XX_betas.npz``): ``nsddata_betas/ppdata/subjNN/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionNN.nii.gz``
  (int16 x 300) and ``.hdf5``, ``nsddata/ppdata/subjNN/func1pt8mm/brainmask.nii.gz`` and ``roi/streams.nii.gz`` +
  ``nsdgeneral.nii.gz`` (-1 outside the brain; streams 1 = early on the early-visual labels, 5 = ventral on the
  higher-visual ones) with ``nsddata/freesurfer/fsaverage/label/streams.mgz.ctab``, ``behav/responses.tsv``;
  the same ``streams.nii.gz`` in NSD's MNI space, ``nsddata/ppdata/subjNN/MNI/roi/`` (the simulated spaces coincide);
- fMRIPrep's outputs as ``fmriprep --output-spaces MNI152NLin6Asym:res-2`` names them (NSD ships none; its MNI
  ROIs are on FSL's MNI152, TemplateFlow's MNI152NLin6Asym).

The test images are the shared1000 ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.sim.layouts import (
    LayoutContext,
    SimLayout,
    captions_by_stimulus,
    coco_captions_file,
    drop_bids_stimuli,
    register,
    rename_fmriprep,
    write_events_sidecar,
)

#: Rows of the stand-in imgBrick that no trial shows (an id beyond them is an error the tests make).
UNSEEN_ROWS = 16


@register
class NsdLayout(SimLayout):
    name = "nsd"
    summary = "NSD's download layout: 73k_id events, nsd_stimuli.hdf5, nsd_stim_info_merged.csv, COCO captions"
    bids_subdir = "nsddata_rawdata"
    task_label = "nsdcore"
    session_format = "nsd{:02d}"

    def stimulus_names(self, table, rng):
        rows = len(table) + UNSEEN_ROWS
        ids = rng.choice(np.arange(1, rows + 1), size=len(table), replace=False)
        return [str(int(i)) for i in ids]

    def events(self, trials, preset, n_vols):
        return pd.DataFrame({
            "onset": trials["onset"].to_numpy(float), "duration": trials["duration"].to_numpy(float),
            "trial_number": np.arange(1, len(trials) + 1), "73k_id": trials["stim_file"].astype(int).to_numpy(),
            "10k_id": trials["stim_id"].astype(int).to_numpy(),
        })

    def finish(self, ctx: LayoutContext) -> None:
        import h5py

        from bids_recon.sim.betas import write_nsd, write_nsd_rois

        drop_bids_stimuli(ctx.bids_dir)
        write_events_sidecar(ctx.bids_dir, "nsdcore", {
            "trial_number": "trial number within the run (1-based)",
            "73k_id": "the image: 1-based index into the 73k images of nsd_stimuli.hdf5 (row 73k_id - 1)",
            "10k_id": "the image's index (1-based) among the participant's 10k images"})
        table = ctx.stim.table
        n_rows = len(table) + UNSEEN_ROWS
        size = ctx.preset.image_size
        brick = ctx.rng.integers(0, 256, (n_rows, size, size, 3), dtype=np.uint8)
        ids = table["stim_file"].astype(int).to_numpy()
        brick[ids - 1] = np.round(ctx.stim.images * 255).astype(np.uint8)
        stimuli = ctx.root / "nsddata_stimuli" / "stimuli" / "nsd"
        stimuli.mkdir(parents=True)
        with h5py.File(stimuli / "nsd_stimuli.hdf5", "w") as handle:
            handle.create_dataset("imgBrick", data=brick)

        coco = ctx.rng.choice(np.arange(1000, 600000), size=n_rows, replace=False)
        split = np.where(ctx.rng.uniform(size=n_rows) < 0.2, "val2017", "train2017")
        shared = np.zeros(n_rows, dtype=bool)
        shared[ids[table["split"].to_numpy() == "test"] - 1] = True
        info = pd.DataFrame({"cocoId": coco, "cocoSplit": split, "cropBox": "(0, 0, 0.1, 0.1)", "loss": 0.0,
                             "nsdId": np.arange(n_rows), "flagged": False, "BOLD5000": False, "shared1000": shared})
        shown = np.zeros(n_rows, dtype=int)
        shown[ids - 1] = 1
        for s in range(1, 9):
            info[f"subject{s}"] = shown if s <= len(ctx.models) else 0
        for s in range(1, 9):
            for rep in range(3):
                info[f"subject{s}_rep{rep}"] = 0
        experiments = ctx.root / "nsddata" / "experiments" / "nsd"
        experiments.mkdir(parents=True)
        info.to_csv(experiments / "nsd_stim_info_merged.csv")
        sets = ctx.published_betas()  # with nsd_expdesign.mat (sharedix, subjectim, masterordering)
        write_nsd(ctx.root, sets, shared=ids[table["split"].to_numpy() == "test"])
        atlas = ctx.anat.atlas
        for beta_set in sets:
            streams = write_nsd_rois(ctx.root, beta_set, np.isin(atlas, ctx.anat.early_labels),
                                     np.isin(atlas, ctx.anat.higher_labels))
            mni = streams.parent.parent.parent / "MNI" / "roi" / streams.name
            mni.parent.mkdir(parents=True)
            shutil.copy(streams, mni)
        rename_fmriprep(ctx.fmriprep_dir, space="MNI152NLin6Asym_res-2")

        by_name = captions_by_stimulus(ctx.stim)
        for year in ("train2017", "val2017"):
            rows = np.flatnonzero(split == year)
            texts = {int(coco[r]): by_name[str(r + 1)] for r in rows if str(r + 1) in by_name}
            coco_captions_file(stimuli / "annotations" / f"captions_{year}.json", texts, year)

    def run_args(self, bids_dir: Path, stores_dir: Path) -> list[str]:
        return ["--dataset", "nsd"]
