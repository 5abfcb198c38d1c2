"""``--layout bold5000``: BOLD5000 (ds001499) as published.

- participants ``CSI1``..., task ``5000scenes``;
- events: ``onset``, ``duration``, ``Subj``, ``Sess``, ``Run``, ``Trial``, ``ImgName``, ``ImgType``
  (coco / imagenet / scenes, ``rep_`` on later presentations), ``StimOn(s)``, ``StimOff(s)``, ``Response``, ``RT``,
  ``stim_file`` (the bare file name: ``COCO_train2014_000000420713.jpg``, ``n02000000_12.JPEG``, ``kitchen3.jpg``);
- the images outside the dataset in ``OUT_stimuli/BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli/{COCO,ImageNet,
  Scene}/``; COCO captions (``OUT_stimuli/annotations/captions_train2014.json``) and ``synset_words.txt``;
- the release-2 single-trial betas (:mod:`bids_recon.sim.betas`) in ``OUT_stimuli/BOLD5000_GLMsingle_betas/``:
  ``CSI{n}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-NN.nii.gz``, ``CSI{n}_imgnames.txt``, ``CSI{n}_brainmask.nii.gz``;
- fMRIPrep 1.0's legacy names: ``_bold_space-T1w_preproc.nii.gz``, ``_bold_space-T1w_brainmask.nii.gz``,
  ``_bold_confounds.tsv`` with CamelCase columns, no sidecars, no ``dataset_description.json``;
- the ROI masks as ds001499 ships them: ``derivatives/spm/sub-XX/sub-XX_mask-{LH,RH}{EarlyVis,LOC,PPA}.nii.gz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.sim.layouts import (
    LayoutContext,
    SimLayout,
    captions_by_stimulus,
    coco_captions_file,
    drop_bids_stimuli,
    hemispheres,
    register,
    rename_fmriprep,
    save_image,
    save_mask,
    split_by,
    synset_number,
    visual_rois,
    write_events_sidecar,
    write_synset_words,
)
from bids_recon.sim.stimuli import CATEGORIES

#: Scene categories of the simulated "Scene" images (BOLD5000 names them ``<scene><n>.jpg``).
SCENES = ("kitchen", "concert", "church", "beach", "garbagedump", "elevatorOutside")
FOLDERS = {"coco": "COCO", "imagenet": "ImageNet", "scenes": "Scene"}


def image_type(name: str) -> str:
    return "coco" if name.startswith("COCO_") else "imagenet" if name.endswith(".JPEG") else "scenes"


@register
class Bold5000Layout(SimLayout):
    name = "bold5000"
    summary = "BOLD5000: bare file names found in category folders, rep_ rows, legacy fMRIPrep names, sub-CSI1"
    task_label = "5000scenes"
    subject_format = "CSI{}"

    def stimulus_names(self, table, rng):
        kinds = rng.choice(["coco", "imagenet", "scenes"], size=len(table), p=[0.4, 0.4, 0.2])
        coco = rng.choice(np.arange(10_000, 580_000), size=len(table), replace=False)
        index = {c: i for i, c in enumerate(CATEGORIES)}
        names = []
        for kind, number, category, stim in zip(kinds, coco, table["category"], table["stim_id"], strict=True):
            if kind == "coco":
                names.append(f"COCO_train2014_{int(number):012d}.jpg")
            elif kind == "imagenet":
                names.append(f"n{synset_number(index[category]):08d}_{int(stim)}.JPEG")
            else:
                names.append(f"{SCENES[int(stim) % len(SCENES)]}{int(stim)}.jpg")
        return names

    def events(self, trials, preset, n_vols):
        names = trials["stim_file"].to_numpy()
        kind = [("rep_" if r > 0 else "") + image_type(n) for n, r in zip(names, trials["repeat"], strict=True)]
        onset, duration = trials["onset"].to_numpy(float), trials["duration"].to_numpy(float)
        return pd.DataFrame({
            "onset": onset, "duration": duration, "Subj": int(str(trials["subject"].iloc[0]).removeprefix("CSI")),
            "Sess": trials["session"].astype(int).to_numpy(), "Run": trials["run"].astype(int).to_numpy(),
            "Trial": np.arange(1, len(trials) + 1), "ImgName": names, "ImgType": kind, "StimOn(s)": onset,
            "StimOff(s)": onset + duration, "Response": 2, "RT": 1.5, "stim_file": names})

    def finish(self, ctx: LayoutContext) -> None:
        drop_bids_stimuli(ctx.bids_dir)
        write_events_sidecar(ctx.bids_dir, "5000scenes", {
            "ImgName": "the image's file name", "ImgType": "coco, imagenet or scenes; rep_ = a repetition",
            "stim_file": "the image's file name (in the BOLD5000 stimulus folders)"})
        presented = ctx.stores_dir / "BOLD5000_Stimuli" / "Scene_Stimuli" / "Presented_Stimuli"
        for image, name in zip(ctx.stim.images, ctx.stim.table["stim_file"], strict=True):
            save_image(image, presented / FOLDERS[image_type(name)] / name)
        by_name = captions_by_stimulus(ctx.stim)
        coco = {int(n.split("_")[-1].split(".")[0]): by_name[n] for n in ctx.stim.table["stim_file"]
                if image_type(n) == "coco"}
        coco_captions_file(ctx.stores_dir / "annotations" / "captions_train2014.json", coco, "train2014")
        write_synset_words(ctx.stores_dir / "synset_words.txt", list(CATEGORIES))
        rename_fmriprep(ctx.fmriprep_dir, space="T1w", legacy=True, description=False)
        write_spm_masks(ctx)
        from bids_recon.sim.betas import write_bold5000

        for beta_set in ctx.published_betas():
            write_bold5000(ctx.stores_dir / "BOLD5000_GLMsingle_betas", beta_set)

    def run_args(self, bids_dir: Path, stores_dir: Path) -> list[str]:
        return ["--dataset", "bold5000",
                "--stimuli-dir", str(stores_dir / "BOLD5000_Stimuli" / "Scene_Stimuli" / "Presented_Stimuli"),
                "--captions", str(stores_dir / "annotations"), "--synset-words", str(stores_dir / "synset_words.txt"),
                *spm_mask_args(bids_dir)]


#: BOLD5000's ROI masks (``derivatives/spm/sub-XX/sub-XX_mask-<hemisphere><area>.nii.gz``) of each ROI.
SPM_AREAS = {"earlyvisual": ("EarlyVis",), "highervisual": ("LOC", "PPA")}


def write_spm_masks(ctx: LayoutContext) -> None:
    """BOLD5000's ROI masks as ds001499 ships them, per hemisphere: EarlyVis, LOC, PPA (LOC and PPA cut from the
    higher-visual area), on the BOLD grid."""
    rois, sides = visual_rois(ctx.anat), hemispheres(ctx.anat)
    for model in ctx.models:
        folder = ctx.bids_dir / "derivatives" / "spm" / f"sub-{model.subject}"
        for side, half in sides.items():
            loc, ppa = split_by(rois["higher"] & half, 1, 2)
            for area, mask in (("EarlyVis", rois["early"] & half), ("LOC", loc), ("PPA", ppa)):
                save_mask(mask, ctx.anat.affine, folder / f"sub-{model.subject}_mask-{side}{area}.nii.gz")


def spm_mask_args(bids_dir: Path) -> list[str]:
    """``--roi-mask`` flags of BOLD5000's masks, both hemispheres of each area (their union)."""
    folder = bids_dir / "derivatives" / "spm" / "sub-{subject}"
    return [flag for name, areas in SPM_AREAS.items() for area in areas for side in ("LH", "RH") for flag in
            ("--roi-mask", f"{name}={folder / f'sub-{{subject}}_mask-{side}{area}.nii.gz'}")]
