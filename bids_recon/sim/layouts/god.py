"""``--layout god``: Generic Object Decoding (ds001246) as published.

- sessions ``perceptionTraining01`` and ``perceptionTest01`` (test images only there), task ``perception``;
- events: ``onset``, ``duration``, ``trial_no`` (rest rows counted), ``event_type`` (rest / stimulus),
  ``stimulus_id`` (float ``2000000.000012``), ``stimulus_name`` (``n02000000_12``), ``category_index``,
  ``image_index``, ``response_time`` (set on the one-back repeats, seconds from run start); a rest row before the
  first and after the last image;
- one-back repeats: in each run one presentation shows the previous image again;
- no per-run BOLD sidecar: ``task-perception_bold.json`` at the root;
- ImageNet-style JPEGs (``<stimulus_name>.JPEG``), one greyscale and one CMYK as in ImageNet, outside the dataset
  (``OUT_stimuli/imagenet/``), with a ``synset_words.txt``;
- the ROI masks as GOD ships them, one per hemisphere and area, on a grid twice as fine as the BOLD's:
  ``sourcedata/sub-XX/anat/sub-XX_mask_{LH,RH}_{V1d,V1v,V2d,V2v,V3d,V3v,LOC,FFA,PPA,HVC}.nii.gz`` (V1-V3 cut from
  the early-visual area, LOC/FFA/PPA from the higher-visual one, HVC = their union);
- fMRIPrep's outputs in ``space-T1w`` without ``res-`` (GOD ships none: those of ``fmriprep --output-spaces T1w``;
  the simulated T1w space coincides with the template).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.design.repeats import repeat_numbers
from bids_recon.sim.layouts import (
    LayoutContext,
    SimLayout,
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


def imagenet_names(table: pd.DataFrame) -> list[str]:
    """``n0XXXXXXX_K`` per stimulus: its category's made-up synset and a running image number."""
    index = {c: i for i, c in enumerate(CATEGORIES)}
    return [f"n{synset_number(index[c]):08d}_{int(i)}" for c, i in zip(table["category"], table["stim_id"],
                                                                          strict=True)]


def one_back(trials: pd.DataFrame, rng: np.random.Generator, per_run: int = 1) -> pd.DataFrame:
    """Make ``per_run`` presentations of each run repeat the image shown just before (``kind`` repeat)."""
    out = trials.copy()
    out["kind"] = np.where(out["split"] == "test", "test", "train")
    for _, rows in out.groupby(["session", "run"], sort=False):
        index = rows.index.to_numpy()
        for position in rng.choice(np.arange(1, len(index)), size=per_run, replace=False):
            row, before = index[position], index[position - 1]
            out.loc[row, ["stim_id", "stim_file", "split"]] = out.loc[before, ["stim_id", "stim_file", "split"]].values
            out.loc[row, "kind"] = "repeat"
    out["repeat"] = repeat_numbers(out["stim_id"])
    return out


def write_kamitani_masks(ctx: LayoutContext, upsample: int = 2) -> None:
    """GOD's (and Deeprecon's) ROI masks: ``sourcedata/sub-XX/anat/sub-XX_mask_<hemisphere>_<area>.nii.gz``."""
    rois, sides = visual_rois(ctx.anat), hemispheres(ctx.anat)
    for model in ctx.models:
        folder = ctx.bids_dir / "sourcedata" / f"sub-{model.subject}" / "anat"
        for side, half in sides.items():
            areas = {}
            for number, part in enumerate(split_by(rois["early"] & half, 1, 3), start=1):  # posterior to anterior
                dorsal, ventral = split_by(part, 2, 2)[::-1]
                areas.update({f"V{number}d": dorsal, f"V{number}v": ventral})
            higher = rois["higher"] & half
            areas.update(zip(("LOC", "FFA", "PPA"), split_by(higher, 1, 3), strict=True))
            areas["HVC"] = higher
            for area, mask in areas.items():
                save_mask(mask, ctx.anat.affine, folder / f"sub-{model.subject}_mask_{side}_{area}.nii.gz", upsample)


@register
class GodLayout(SimLayout):
    name = "god"
    summary = "GOD: ImageNet names outside the dataset, rest and one-back rows, a test session, root sidecar"
    overrides = {"n_sessions": 2, "n_runs": 1, "n_train": 24, "n_test": 6, "n_test_repeats": 4}
    test_only_runs = 1
    task_label = "perception"

    def session_label(self, index: int) -> str:
        return "perceptionTraining01" if index == 0 else f"perceptionTest{index:02d}"

    def stimulus_names(self, table, rng):
        return imagenet_names(table)

    def edit_schedule(self, trials, table, rng):
        return one_back(trials, rng)

    def events(self, trials, preset, n_vols):
        names = trials["stim_file"].to_numpy()
        end = float(trials["onset"].iloc[-1] + trials["duration"].iloc[-1])
        rows = [{"onset": 0.0, "duration": float(trials["onset"].iloc[0]), "event_type": "rest"}]
        for onset, duration, name, kind in zip(trials["onset"], trials["duration"], names, trials["kind"],
                                               strict=True):
            synset, image = name[1:].split("_")
            rows.append({"onset": onset, "duration": duration, "event_type": "stimulus",
                         "stimulus_id": f"{int(synset)}.{int(image):06d}", "stimulus_name": name,
                         "category_index": int(synset) % 1000, "image_index": int(image),
                         "response_time": round(onset + 1.03, 6) if kind == "repeat" else np.nan})
        rows.append({"onset": end, "duration": n_vols * preset.tr - end, "event_type": "rest"})
        table = pd.DataFrame(rows)
        table.insert(2, "trial_no", np.arange(1, len(table) + 1))
        return table[["onset", "duration", "trial_no", "event_type", "stimulus_id", "stimulus_name",
                      "category_index", "image_index", "response_time"]]

    def finish(self, ctx: LayoutContext) -> None:
        drop_bids_stimuli(ctx.bids_dir)
        write_events_sidecar(ctx.bids_dir, "perception", {
            "trial_no": "block number (rest blocks counted)", "event_type": "rest or stimulus",
            "stimulus_id": "ImageNet synset number and image number as one float",
            "stimulus_name": "ImageNet file stem", "category_index": "category", "image_index": "image",
            "response_time": "one-back detection (s from the run's start)"})
        for sidecar in ctx.bids_dir.glob("sub-*/ses-*/func/*_bold.json"):
            sidecar.unlink()
        (ctx.bids_dir / "task-perception_bold.json").write_text(json.dumps(
            {"RepetitionTime": ctx.preset.tr, "TaskName": "perception"}, indent=2) + "\n")
        folder = ctx.stores_dir / "imagenet"
        for i, (image, name) in enumerate(zip(ctx.stim.images, ctx.stim.table["stim_file"], strict=True)):
            save_image(image, folder / f"{name}.JPEG", mode={0: "L", 1: "CMYK"}.get(i, "RGB"))
        write_synset_words(ctx.stores_dir / "synset_words.txt", list(CATEGORIES))
        rename_fmriprep(ctx.fmriprep_dir, space="T1w")
        write_kamitani_masks(ctx)

    def run_args(self, bids_dir: Path, stores_dir: Path) -> list[str]:
        return ["--dataset", "god", "--stimuli-dir", str(stores_dir / "imagenet"), "--synset-words",
                str(stores_dir / "synset_words.txt")]
