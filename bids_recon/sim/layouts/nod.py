"""``--layout nod``: the Natural Object Dataset (ds004496) as published.

- two tasks: ``imagenet`` (sessions ``imagenet01``..., images shown once, ``stim_file`` =
  ``imagenet/n02000000/n02000000_12.JPEG``, images in the dataset's ``stimuli/imagenet/`` with
  ``stimuli/imagenet/info/synset_words.txt``) and ``coco`` (session ``coco``, the repeated test images, ``condition``
  = ``coco/000000124419.jpg`` plus fixation rows with ``condition`` n/a; the COCO images outside the dataset in
  ``OUT_stimuli/coco/train2017/`` with ``OUT_stimuli/coco/annotations/captions_train2017.json``);
- the imagenet events' column set varies between runs (``response`` in some), as in the real files;
- fMRIPrep outputs as published: ``run-1`` for the raw ``run-01``, ``space-T1w`` without ``res-``, confounds, no
  brain masks, no boldrefs, no ``dataset_description.json``.
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
    register,
    rename_fmriprep,
    save_image,
    synset_number,
    user_roi_args,
    write_events_sidecar,
    write_synset_words,
    write_user_rois,
)
from bids_recon.sim.stimuli import CATEGORIES


@register
class NodLayout(SimLayout):
    name = "nod"
    summary = "NOD: imagenet + coco tasks, COCO images outside, run-1 T1w outputs without masks"
    overrides = {"n_sessions": 2, "n_runs": 1, "n_train": 24, "n_test": 6, "n_test_repeats": 4}
    test_only_runs = 1

    def session_label(self, index: int) -> str:
        return "coco" if index == 1 else f"imagenet{index + 1:02d}"

    def task(self, session: str) -> str:
        return "coco" if session == "coco" else "imagenet"

    def stimulus_names(self, table, rng):
        index = {c: i for i, c in enumerate(CATEGORIES)}
        coco = rng.choice(np.arange(10_000, 580_000), size=len(table), replace=False)
        names = []
        for split, category, stim, number in zip(table["split"], table["category"], table["stim_id"], coco,
                                                 strict=True):
            synset = f"n{synset_number(index[category]):08d}"
            names.append(f"coco/{int(number):012d}.jpg" if split == "test" else
                         f"imagenet/{synset}/{synset}_{int(stim)}.JPEG")
        return names

    def events(self, trials, preset, n_vols):
        onset, duration = trials["onset"].to_numpy(float), trials["duration"].to_numpy(float)
        if trials["session"].iloc[0] != "coco":
            table = pd.DataFrame({"onset": onset, "duration": duration, "trial_type": 500.0, "response_time": 1.4,
                                  "stim_file": trials["stim_file"].to_numpy()})
            if trials["run"].iloc[0] == "01":
                table.insert(3, "response", 1.0)
            return table
        table = pd.DataFrame({"onset": onset, "duration": duration, "trial_type": 7.0, "response": 0.0,
                              "response_time": 0.0, "condition": trials["stim_file"].to_numpy()})
        fixation = pd.DataFrame({"onset": [1.0, 2.0], "duration": 0.5, "trial_type": [1000.0, 2000.0],
                                 "response": [0.0, 1.0], "response_time": [0.0, 0.9], "condition": np.nan})
        return pd.concat([fixation, table], ignore_index=True).sort_values("onset", kind="stable")

    def finish(self, ctx: LayoutContext) -> None:
        drop_bids_stimuli(ctx.bids_dir)
        write_events_sidecar(ctx.bids_dir, "imagenet", {"response": "1 animate, -1 inanimate",
                                                        "response_time": "response time (s)"})
        write_events_sidecar(ctx.bids_dir, "coco", {"response": "1 = a key press", "response_time": "(s)",
                                                    "condition": "the names of images used in the experiment"})
        by_name = captions_by_stimulus(ctx.stim)
        coco = {}
        for image, name in zip(ctx.stim.images, ctx.stim.table["stim_file"], strict=True):
            if name.startswith("coco/"):
                save_image(image, ctx.stores_dir / "coco" / "train2017" / Path(name).name)
                coco[int(Path(name).stem)] = by_name[name]
            else:
                save_image(image, ctx.bids_dir / "stimuli" / name)
        write_synset_words(ctx.bids_dir / "stimuli" / "imagenet" / "info" / "synset_words.txt", list(CATEGORIES))
        coco_captions_file(ctx.stores_dir / "coco" / "annotations" / "captions_train2017.json", coco, "train2017")
        rename_fmriprep(ctx.fmriprep_dir, space="T1w", unpadded_runs=True, keep=("preproc", "confounds", "sidecars"),
                        description=False)
        write_user_rois(ctx, ctx.stores_dir / "rois")  # NOD ships no volume ROIs: a user's masks

    def run_args(self, bids_dir: Path, stores_dir: Path) -> list[str]:
        return ["--dataset", "nod", "--stimuli-dir", str(stores_dir / "coco" / "train2017"),
                "--captions", str(stores_dir / "coco" / "annotations"), *user_roi_args(stores_dir / "rois")]
