"""Single-trial estimators side by side on simulated data: wall time, peak memory, accuracy, reliability.

Data come from the simulator (per-voxel HRFs, AR(1) noise, shared noise recorded in the confounds, drift,
NSD-like single-trial SNR), in two sizes:

- ``two-runs``: 1 session x 2 runs, 120 trials (90 training images once, 10 test images x 3), TR 1.5 s;
- ``nsd-session``: 1 session x 12 runs, 744 trials (594 once, 50 x 3), TR 1.333 s (NSD's TR).

Both on a ~20,000-voxel brain mask. Each estimator runs in its own process (one BLAS thread) so that its
peak memory is its own; the time excludes reading the NIfTI files (reported apart). Accuracy is the
median Pearson r, over simulated signal voxels, between estimated and true single-trial amplitudes;
reliability is the median split-half correlation of repeated stimuli's betas (first vs later repeats)
over signal voxels.

    python benchmarks/bench_glm.py --size two-runs            # all estimators + nilearn, a table
    python benchmarks/bench_glm.py --size nsd-session --estimators lsa fithrf-denoise-rr nilearn-lsa
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

SIZES = {
    "two-runs": dict(n_subjects=1, n_sessions=1, n_runs=2, n_train=90, n_test=10, n_test_repeats=3, tr=1.5,
                     grid=(34, 41, 34)),
    "nsd-session": dict(n_subjects=1, n_sessions=1, n_runs=12, n_train=594, n_test=50, n_test_repeats=3,
                        tr=1.333, grid=(34, 41, 34)),
}
ESTIMATORS = ["lsa", "lss", "fithrf", "fithrf-denoise", "fithrf-denoise-rr", "nilearn-lsa"]


def make_data(size: str, root: Path) -> Path:
    from bids_recon.sim import simulate_dataset

    bids = root / size / "ds"
    if not (bids / "dataset_description.json").exists():
        simulate_dataset(bids, preset="small", seed=0, **SIZES[size])
    return bids


def _inputs(bids: Path):
    from bids_recon.bids.layout import collect_inputs
    from bids_recon.glm import intersect_masks

    inputs = collect_inputs(bids, bids / "derivatives" / "fmriprep")["01"]
    return inputs, intersect_masks([r.brain_mask for r in inputs.runs])


def run_one(bids: Path, estimator: str) -> dict:
    from bids_recon.config import DEFAULT_CONFOUNDS
    from bids_recon.glm import RunFiles, fit_session
    from bids_recon.glm.runs import _load_run
    from bids_recon.sim import load_truth

    inputs, mask_img = _inputs(bids)
    files = [RunFiles(r.preproc_bold, r.events, r.confounds, r.repetition_time, r.subject, r.session, r.run)
             for r in inputs.runs]
    start = time.perf_counter()
    loaded = [_load_run(f, mask_img, list(DEFAULT_CONFOUNDS), "stim_file") for f in files]
    load_s = time.perf_counter() - start
    runs = [run for run, _, _ in loaded]
    start = time.perf_counter()
    if estimator == "nilearn-lsa":
        betas = _nilearn_lsa(inputs, mask_img, [t for _, t, _ in loaded])
    else:
        betas = fit_session(runs, estimator).betas
    fit_s = time.perf_counter() - start
    stacked = np.concatenate(betas)
    truth = load_truth(bids.parent / "ds_groundtruth", "01")
    mask = np.asarray(mask_img.dataobj) > 0
    position = np.full(truth["mask"].shape, -1)
    position[truth["mask"]] = np.arange(int(truth["mask"].sum()))
    columns = position[mask]
    signal = np.flatnonzero(truth["signal"][columns])
    amplitudes = truth["amplitudes"][:, columns]
    accuracy = float(np.median([np.corrcoef(stacked[:, v], amplitudes[:, v])[0, 1] for v in signal]))
    stims = np.concatenate([t["stim_id"].to_numpy(str) for _, t, _ in loaded])
    first, later = _split_half(stims)
    half = [np.corrcoef(stacked[first, v], stacked[later, v])[0, 1] for v in signal]
    return {"estimator": estimator, "voxels": int(mask.sum()), "trials": int(len(stims)), "runs": len(runs),
            "load_s": round(load_s, 2), "fit_s": round(fit_s, 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
            "median_r_truth": round(accuracy, 3), "split_half_r": round(float(np.median(half)), 3)}


def _split_half(stims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the first presentation and of the mean-free second presentation of each repeated stimulus."""
    first, later = [], []
    for stim in np.unique(stims):
        rows = np.flatnonzero(stims == stim)
        if len(rows) >= 2:
            first.append(rows[0])
            later.append(rows[1])
    return np.asarray(first), np.asarray(later)


def _nilearn_lsa(inputs, mask_img, trials):
    """nilearn FirstLevelModel (OLS noise model, Glover HRF, cosine drift, same confounds), one effect per trial."""
    import pandas as pd
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.maskers import NiftiMasker

    from bids_recon.config import DEFAULT_CONFOUNDS

    masker = NiftiMasker(mask_img).fit()
    out = []
    for run, table in zip(inputs.runs, trials, strict=True):
        events = pd.DataFrame({"onset": table["onset"], "duration": table["duration"],
                               "trial_type": [f"t{i:04d}" for i in range(len(table))]})
        confounds = pd.read_csv(run.confounds, sep="\t")[list(DEFAULT_CONFOUNDS)].fillna(0)
        model = FirstLevelModel(t_r=run.repetition_time, hrf_model="glover", drift_model="cosine", high_pass=0.01,
                                noise_model="ols", mask_img=mask_img, signal_scaling=0, minimize_memory=True)
        model.fit(str(run.preproc_bold), events=events, confounds=confounds)
        effects = [np.ravel(masker.transform(model.compute_contrast(t, output_type="effect_size")))
                   for t in events["trial_type"]]
        out.append(np.stack(effects))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="two-runs")
    parser.add_argument("--estimators", nargs="+", default=ESTIMATORS)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/bids_recon_bench_glm"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    bids = make_data(args.size, args.data_dir)
    if args.one:
        print(json.dumps(run_one(bids, args.one)))
        return 0
    rows = []
    for estimator in args.estimators:
        proc = subprocess.run([sys.executable, __file__, "--size", args.size, "--data-dir", str(args.data_dir),
                               "--one", estimator], capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
