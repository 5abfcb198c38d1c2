"""``--layout things``: THINGS-fMRI (ds004192) as published.

- events: ``onset``, ``duration``, ``trial_type`` (exp / test / catch), ``category_nr``, ``exemplar_nr``,
  ``test_image_nr``, ``things_category_nr``, ``things_exemplar_nr`` (floats, as in the real files),
  ``response_time`` (catch trials only), ``file_path`` (``ball/ball_03s.jpg``; catch: ``catch008.jpg``); task
  ``things``, sessions ``things01``...
- catch trials: some training presentations become catch trials; their images (``catchNNN.jpg``) are not in the
  image set, as THINGS' artificial catch images are not;
- the images, JPEG, in nested concept folders outside the dataset: ``OUT_stimuli/THINGS/images/<concept>/``;
- fMRIPrep 20.2.0 names: ``run-1`` for the raw ``run-01``, ``space-T1w`` without ``res-``;
- the single-trial responses (:mod:`bids_recon.sim.betas`) in ``derivatives/`` as THINGS publishes them: ``betas_vol``
  (NIfTI per run + ``conditions.tsv``), ``betas_csv`` (``ResponseData.h5`` + the two CSVs) and ``brainmasks/``;
- the ROI masks a user gives (THINGS-fMRI has none in its BIDS tree): ``OUT_stimuli/rois/sub-XX_desc-<roi>_mask``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.sim.layouts import (
    LayoutContext,
    SimLayout,
    drop_bids_stimuli,
    register,
    rename_fmriprep,
    save_image,
    user_roi_args,
    write_user_rois,
)
from bids_recon.sim.layouts import write_events_sidecar as events_sidecar
from bids_recon.sim.stimuli import CATEGORIES

#: Catch trials per run.
CATCH_PER_RUN = 2


@register
class ThingsLayout(SimLayout):
    name = "things"
    summary = "THINGS-fMRI: file_path into nested concept folders outside the dataset, catch trials, run-1 T1w"
    task_label = "things"
    session_format = "things{:02d}"

    def stimulus_names(self, table, rng):
        names, count = [], {}
        for category in table["category"]:
            count[category] = count.get(category, 0) + 1
            names.append(f"{category}/{category}_{count[category]:02d}{'s' if count[category] % 3 else 'n'}.jpg")
        return names

    def edit_schedule(self, trials, table, rng):
        out = trials.copy()
        out["kind"] = np.where(out["split"] == "test", "test", "exp")
        catch = 0
        for _, rows in out.groupby(["session", "run"], sort=False):
            train = rows.index[rows["kind"] == "exp"].to_numpy()
            for row in rng.choice(train, size=min(CATCH_PER_RUN, len(train)), replace=False):
                catch += 1
                out.loc[row, ["kind", "stim_file"]] = ["catch", f"catch{catch:03d}.jpg"]
        return out

    def events(self, trials, preset, n_vols):
        category = trials["stim_file"].str.split("/").str[0]
        index = {c: i + 1 for i, c in enumerate(CATEGORIES)}
        kind = trials["kind"].to_numpy()
        exemplar = trials["stim_file"].str.extract(r"_(\d+)[sn]\.jpg$")[0].astype(float)
        test_numbers = {s: i + 1 for i, s in enumerate(sorted(trials.loc[kind == "test", "stim_file"].unique()))}
        return pd.DataFrame({
            "onset": trials["onset"].to_numpy(float), "duration": trials["duration"].to_numpy(float),
            "trial_type": kind,
            "category_nr": np.where(kind == "catch", len(CATEGORIES) + 1, category.map(index).fillna(0)).astype(int),
            "exemplar_nr": np.where(kind == "catch", 0, exemplar.fillna(0)).astype(int),
            "test_image_nr": [float(test_numbers[s]) if k == "test" else np.nan for s, k in
                              zip(trials["stim_file"], kind, strict=True)],
            "things_category_nr": np.where(kind == "catch", np.nan, category.map(index).astype(float) * 2.0),
            "things_exemplar_nr": np.where(kind == "catch", np.nan, exemplar),
            "response_time": np.where(kind == "catch", 0.9, np.nan),
            "file_path": trials["stim_file"].to_numpy(),
        })

    def finish(self, ctx: LayoutContext) -> None:
        drop_bids_stimuli(ctx.bids_dir)
        events_sidecar(ctx.bids_dir, "things", {
            "trial_type": "exp (a THINGS image), test (a repeated test image) or catch (an oddball image)",
            "file_path": "path of the image in the THINGS database (e.g. dog/dog_12s.jpg)",
            "category_nr": "running index of the concept (the last one is catch)",
            "exemplar_nr": "exemplar number of the concept", "test_image_nr": "index of the test image",
            "things_category_nr": "THINGS concept number", "things_exemplar_nr": "THINGS exemplar number",
            "response_time": "response to a catch image (s)"})
        images = ctx.stores_dir / "THINGS" / "images"
        for image, name in zip(ctx.stim.images, ctx.stim.table["stim_file"], strict=True):
            save_image(image, images / name)
        rename_fmriprep(ctx.fmriprep_dir, space="T1w", unpadded_runs=True)
        write_user_rois(ctx, ctx.stores_dir / "rois")
        from bids_recon.sim.betas import write_things_csv, write_things_vol

        for beta_set in ctx.published_betas():
            write_things_vol(ctx.bids_dir / "derivatives", beta_set)
            write_things_csv(ctx.bids_dir / "derivatives", beta_set)

    def run_args(self, bids_dir: Path, stores_dir: Path) -> list[str]:
        return ["--dataset", "things", "--stimuli-dir", str(stores_dir / "THINGS" / "images"),
                *user_roi_args(stores_dir / "rois")]
