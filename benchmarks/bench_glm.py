"""Single-trial estimators side by side on simulated data: wall time, peak memory, accuracy, reliability.

Two families of data:

- ``--size``: our BIDS simulator (:mod:`bids_recon.sim`; per-voxel HRFs, AR(1) noise, shared noise recorded in
  the confounds, drift, NSD-like single-trial SNR) read through the pipeline's loaders, in two sizes:
  ``two-runs`` (1 session x 2 runs, 120 trials, TR 1.5 s) and ``nsd-session`` (12 runs, 744 trials, TR 1.333 s),
  both on a ~20,000-voxel brain mask;
- ``--family eventsim``: the independent family of :mod:`bids_recon.sim.eventsim` (GLMsingle-shaped, warped or
  inverse-logit HRFs, amplitudes that change sign and vary from trial to trial, shared random-walk and
  physiological-like noise that no confound records, polynomial drift, AR(1)), swept over the named conditions
  of ``EVENT_PRESETS`` and several seeds.

Each (data, estimator) runs in its own process with one BLAS thread, so that its peak memory is its own; the time
excludes making or reading the data (with ``--family eventsim``, the fastest of up to 3 fits on fresh copies of the
runs, stopping once they took 10 s: short fits on a shared machine vary by 2x). Accuracy is the median Pearson r,
over the simulated signal voxels, between estimated and true single-trial amplitudes. ``--reference glmsingle``
also runs GLMsingle (Prince et al. 2022, the Python code in ``../shared/vendor/GLMsingle``, installed with
``pip install h5py && pip install --no-deps <copy of it>``) on the very same runs in its own process and prints
ratios: our time / its time, our peak memory / its peak memory, our r - its type-D r.

    python benchmarks/bench_glm.py --size two-runs            # all estimators + nilearn, a table
    python benchmarks/bench_glm.py --size nsd-session --estimators lsa fithrf-denoise-rr nilearn-lsa
    python benchmarks/bench_glm.py --family eventsim --reference glmsingle --seeds 0 1 2
    python benchmarks/bench_glm.py --family eventsim --conditions nsd-session --reference glmsingle
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
EVENT_ESTIMATORS = ["lsa", "lss", "fithrf-denoise-rr"]
#: Conditions of the default sweep (the NSD-like 20k-voxel session is run on its own).
SWEEP = ["fast-2run", "fast-2run-noshared", "nsd-like-6run", "slow-jitter", "fast-tr0.8", "single-presentation",
         "reliable-repeats", "strong-physio", "many-components"]
#: Where GLMsingle's HRF library lies when the installed package lacks it (its setup.py ships no package data).
VENDOR_HRF_DIR = Path(__file__).resolve().parents[2] / "shared" / "vendor" / "GLMsingle" / "glmsingle" / "hrf"


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)


def median_r(betas: np.ndarray, amplitudes: np.ndarray, signal: np.ndarray) -> float:
    """Median over signal voxels of the Pearson r between ``(n_trials, n_voxels)`` betas and amplitudes."""
    v = np.flatnonzero(signal)
    b = betas[:, v].astype(np.float64)
    a = amplitudes[:, v].astype(np.float64)
    b -= b.mean(axis=0)
    a -= a.mean(axis=0)
    denom = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    return float(np.median(np.where(denom > 0, (a * b).sum(axis=0) / np.where(denom > 0, denom, 1.0), 0.0)))


# ----------------------------------------------------------------------------------------------------------
# GLMsingle


def glmsingle_fit(raw: list[np.ndarray], onset_volumes: list[np.ndarray], stim_ids: list[np.ndarray], tr: float,
                  stim_duration: float, extra_regressors: list[np.ndarray] | None = None) -> dict:
    """GLMsingle with its defaults on raw ``(n_volumes, n_voxels)`` runs; betas ``(n_trials, n_voxels)`` per type.

    The design is GLMsingle's: one column per stimulus (condition), a 1 at each trial's onset volume.
    """
    import contextlib
    import io
    import tempfile

    from glmsingle.glmsingle import GLM_single
    from glmsingle.hrf import gethrf

    if not (Path(gethrf.fpath) / "getcanonicalhrflibrary.tsv").exists():
        gethrf.fpath = str(VENDOR_HRF_DIR)
    conditions = {c: i for i, c in enumerate(np.unique(np.concatenate(stim_ids)))}
    design = []
    for run, volumes, stims in zip(raw, onset_volumes, stim_ids, strict=True):
        d = np.zeros((run.shape[0], len(conditions)), dtype=np.float32)
        d[volumes, [conditions[s] for s in stims]] = 1.0
        design.append(d)
    data = [np.ascontiguousarray(run.T) for run in raw]
    params = {"wantmemoryoutputs": [0, 1, 1, 1], "wantfileoutputs": [0, 0, 0, 0], "seed": 0}
    if extra_regressors is not None:
        params["extra_regressors"] = extra_regressors
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        os.chdir(tmp)  # it writes a figures folder into the working directory
        try:
            start = time.perf_counter()
            results = GLM_single(params).fit(design, data, stim_duration, tr, outputdir=str(Path(tmp) / "out"))
            seconds = time.perf_counter() - start
        finally:
            os.chdir(cwd)
    out = {"fit_s": seconds}
    for key in ("typeb", "typec", "typed"):
        if key in results:
            out[key] = results[key]["betasmd"].reshape(len(data[0]), -1).T
    last = results.get("typed") or results.get("typec") or results["typeb"]
    out["hrf_index"] = np.asarray(last["HRFindex"]).ravel()
    out["pcnum"] = int(last.get("pcnum", 0) or 0)
    out["frac"] = np.asarray(last["FRACvalue"]).ravel() if "FRACvalue" in last else np.ones(len(data[0]))
    return out


# ----------------------------------------------------------------------------------------------------------
# our simulator, through the pipeline's loaders


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


def fit(runs: list, estimator: str, fit_options: dict | None = None):
    """``fit_session`` with ``estimator``; ``fit_options`` names ``[workflow.glm]`` settings (``noise_selection``...),
    fields of ``FitOptions`` (``reselect_hrf``...) and ``seed``."""
    import dataclasses

    from bids_recon.glm import FitOptions, GlmParams, fit_session

    options = dict(fit_options or {})
    seed = options.pop("seed", 0)
    settings = {f.name: options.pop(f.name) for f in dataclasses.fields(GlmParams) if f.name in options}
    return fit_session(runs, GlmParams(estimator=estimator, **settings), seed, FitOptions(**options))


def run_one(bids: Path, estimator: str, fit_options: dict | None = None) -> dict:
    from bids_recon.glm import RunFiles
    from bids_recon.glm.runs import _load_run, load_image
    from bids_recon.sim import load_truth

    inputs, mask_img = _inputs(bids)
    files = [RunFiles(r.preproc_bold, r.events, r.confounds, r.repetition_time, r.subject, r.session, r.run)
             for r in inputs.runs]
    start = time.perf_counter()
    loaded = [_load_run(f, mask_img, ["auto"], "stim_file")[:3] for f in files]  # the default confounds
    load_s = time.perf_counter() - start
    runs = [run for run, _, _ in loaded]
    trials = [t for _, t, _ in loaded]
    del loaded
    mask = np.asarray(mask_img.dataobj) > 0
    result: dict = {}
    start = time.perf_counter()
    if estimator == "nilearn-lsa":
        betas = _nilearn_lsa(inputs, mask_img, trials)
    elif estimator == "glmsingle":  # the raw BOLD, the same onsets (on the TR grid) and confounds
        raw = [np.asarray(load_image(f.bold, 4).dataobj, dtype=np.float32)[mask].T for f in files]
        volumes = [np.round(r.onsets / r.repetition_time).astype(int) for r in runs]
        confounds = [r.confounds for r in runs]
        duration = float(np.median(np.concatenate([r.durations for r in runs])))
        del runs
        result = glmsingle_fit(raw, volumes, [t["stim_id"].to_numpy(str) for t in trials],
                               files[0].repetition_time, duration, confounds)
        betas = [result["typed"]]
    else:
        betas = fit(runs, estimator, fit_options).betas
    fit_s = result["fit_s"] if result else time.perf_counter() - start
    stacked = np.concatenate(betas)
    truth = load_truth(bids.parent / "ds_groundtruth", "01")
    position = np.full(truth["mask"].shape, -1)
    position[truth["mask"]] = np.arange(int(truth["mask"].sum()))
    columns = position[mask]
    signal = truth["signal"][columns].astype(bool)
    amplitudes = truth["amplitudes"][:, columns]
    stims = np.concatenate([t["stim_id"].to_numpy(str) for t in trials])
    first, later = _split_half(stims)
    half = [np.corrcoef(stacked[first, i], stacked[later, i])[0, 1] for i in np.flatnonzero(signal)]
    row = {"estimator": estimator, "voxels": int(mask.sum()), "trials": int(len(stims)), "runs": len(files),
           "load_s": round(load_s, 2), "fit_s": round(fit_s, 2), "peak_rss_gb": peak_rss_gb(),
           "median_r_truth": round(median_r(stacked, amplitudes, signal), 3),
           "split_half_r": round(float(np.median(half)), 3)}
    if result:
        row["median_r_truth_typeb"] = round(median_r(result["typeb"], amplitudes, signal), 3)
        row["pcnum"] = result["pcnum"]
    return row


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

    from bids_recon.design.confounds import choose_confounds

    masker = NiftiMasker(mask_img).fit()
    out = []
    for run, table in zip(inputs.runs, trials, strict=True):
        events = pd.DataFrame({"onset": table["onset"], "duration": table["duration"],
                               "trial_type": [f"t{i:04d}" for i in range(len(table))]})
        columns = list(choose_confounds(run.confounds, ["auto"]).columns)  # the default confounds
        confounds = pd.read_csv(run.confounds, sep="\t")[columns].fillna(0)
        model = FirstLevelModel(t_r=run.repetition_time, hrf_model="glover", drift_model="cosine", high_pass=0.01,
                                noise_model="ols", mask_img=mask_img, signal_scaling=0, minimize_memory=True)
        model.fit(str(run.preproc_bold), events=events, confounds=confounds)
        effects = [np.ravel(masker.transform(model.compute_contrast(t, output_type="effect_size")))
                   for t in events["trial_type"]]
        out.append(np.stack(effects))
    return out


# ----------------------------------------------------------------------------------------------------------
# the independent family


#: Short fits are repeated (each on fresh runs) and the fastest is kept, as timeit does: one fit of 0.3 s on a shared
#: machine varies by 2x. Repeats stop at this many or once the fits took REPEAT_SECONDS together.
REPEATS = 3
REPEAT_SECONDS = 10.0


def _fastest(fit) -> tuple[object, float]:
    """Run ``fit()`` up to :data:`REPEATS` times (until :data:`REPEAT_SECONDS`): the last result, the fastest time."""
    times: list[float] = []
    while len(times) < REPEATS and sum(times) < REPEAT_SECONDS:
        start = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - start)
    return result, min(times)


def run_one_event(condition: str, seed: int, estimator: str, n_voxels: int | None, fit_options: dict | None = None
                  ) -> dict:
    from bids_recon.glm import default_library
    from bids_recon.sim.eventsim import EVENT_PRESETS, simulate_event_session

    spec = EVENT_PRESETS[condition]
    sim = simulate_event_session(spec, seed, **({"n_voxels": n_voxels} if n_voxels else {}))
    truth = sim.truth
    signal = truth.signal
    row = {"condition": condition, "seed": seed, "estimator": estimator, "voxels": sim.spec.n_voxels,
           "trials": len(truth.stim_ids), "runs": sim.spec.n_runs, "true_components": truth.n_noise_components}
    if estimator == "glmsingle":
        raw, volumes, stims = sim.raw, sim.onset_volumes(), sim.stim_ids
        del sim
        result, _ = _fastest(lambda: glmsingle_fit(raw, volumes, stims, spec.repetition_time, spec.stim_duration))
        result["fit_s"] = min(result["fit_s"], _)  # GLMsingle's own fit time, without the process's set-up
        del raw
        best = result.get("typed", result.get("typec", result["typeb"]))
        peaks = _glmsingle_peaks(spec.stim_duration)[result["hrf_index"]]
        row.update(fit_s=round(result["fit_s"], 2), median_r=round(median_r(best, truth.amplitudes, signal), 3),
                   r_typeb=round(median_r(result["typeb"], truth.amplitudes, signal), 3),
                   components=result["pcnum"], hrf_r=round(_corr(peaks[signal], truth.hrf_peak[signal]), 3),
                   median_fraction=round(float(np.median(result["frac"][signal])), 3), type="D" if "typed" in result
                   else "B")
    else:
        result, seconds = _fastest(lambda: fit(sim.session_runs(), estimator, fit_options))
        del sim
        betas = np.concatenate(result.betas)
        row.update(fit_s=round(seconds, 2), median_r=round(median_r(betas, truth.amplitudes, signal), 3),
                   components=result.n_noise_components)
        if estimator.startswith("fithrf"):
            peaks = _event_peaks(default_library(), spec.stim_duration)[result.hrf_index]
            row.update(hrf_r=round(_corr(peaks[signal], truth.hrf_peak[signal]), 3),
                       median_fraction=round(float(np.median(result.fractions[signal])), 3),
                       warnings=len(result.info.get("Warnings", [])))
    row["peak_rss_gb"] = peak_rss_gb()
    return row


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0


def _event_peaks(library, duration: float) -> np.ndarray:
    """Time to peak (s) of each library member's response to an event of ``duration``."""
    from bids_recon.glm.hrf import FINE_DT

    width = max(1, int(round(duration / FINE_DT)))
    return np.array([np.argmax(np.convolve(h, np.ones(width))) * FINE_DT for h in library.hrfs])


def _glmsingle_peaks(duration: float) -> np.ndarray:
    from bids_recon.glm.hrf import glmsingle_hrfs

    width = max(1, int(round(duration / 0.1)))
    return np.array([np.argmax(np.convolve(h, np.ones(width))) * 0.1 for h in glmsingle_hrfs()])


# ----------------------------------------------------------------------------------------------------------
# the command


def _subprocess(args: list[str]) -> dict | None:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(rows: list[dict], keys: list[str] | None = None) -> str:
    keys = keys or list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def _event_summary(rows: list[dict], conditions: list[str], estimators: list[str]) -> str:
    """Per condition: median over seeds of each estimator's r, time and memory, and the ratios to GLMsingle."""
    out = []
    for condition in conditions:
        mine = [r for r in rows if r["condition"] == condition]
        if not mine:
            continue
        row: dict = {"condition": condition, "seeds": len({r["seed"] for r in mine})}
        for estimator in [*estimators, "glmsingle"]:
            sub = [r for r in mine if r["estimator"] == estimator]
            if sub:
                row[f"r {estimator}"] = round(float(np.median([r["median_r"] for r in sub])), 3)
        ours = {r["seed"]: r for r in mine if r["estimator"] == "fithrf-denoise-rr"}
        theirs = {r["seed"]: r for r in mine if r["estimator"] == "glmsingle"}
        lss = {r["seed"]: r for r in mine if r["estimator"] == "lss"}
        common = sorted(set(ours) & set(theirs))
        if common:
            row["min r diff vs GLMsingle"] = round(min(ours[s]["median_r"] - theirs[s]["median_r"] for s in common), 3)
            row["speed-up"] = round(float(np.median([theirs[s]["fit_s"] / max(ours[s]["fit_s"], 1e-3)
                                                     for s in common])), 1)
            row["memory ratio"] = round(float(np.median([ours[s]["peak_rss_gb"] / theirs[s]["peak_rss_gb"]
                                                         for s in common])), 2)
            row["components ours/GLMsingle/true"] = "/".join(
                str(int(np.median([d[s][k] for s in common]))) for d, k in
                ((ours, "components"), (theirs, "components"), (ours, "true_components")))
            row["HRF r ours/GLMsingle"] = (f"{np.median([ours[s]['hrf_r'] for s in common]):.2f}/"
                                           f"{np.median([theirs[s]['hrf_r'] for s in common]):.2f}")
        if ours and lss:
            row["min r diff vs LSS"] = round(min(ours[s]["median_r"] - lss[s]["median_r"] for s in ours if s in lss), 3)
        out.append(row)
    return _table(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="two-runs")
    parser.add_argument("--family", choices=["bids-sim", "eventsim"], default="bids-sim")
    parser.add_argument("--estimators", nargs="+", default=None)
    parser.add_argument("--reference", choices=["glmsingle"], default=None,
                        help="also run GLMsingle on the same runs and print the ratios")
    parser.add_argument("--conditions", nargs="+", default=SWEEP, help="eventsim conditions (EVENT_PRESETS)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--voxels", type=int, default=None, help="eventsim voxels (default: the preset's)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/bids_recon_bench_glm"))
    parser.add_argument("--json", type=Path, default=None, help="append every row to this JSON-lines file")
    parser.add_argument("--fit-options", type=json.loads, default={},
                        help='[workflow.glm] settings and FitOptions fields as JSON, e.g. '
                             '\'{"reselect_hrf": false, "noise_selection": "cv"}\'')
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--one-event", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one_event:
        condition, seed, estimator = args.one_event
        print(json.dumps(run_one_event(condition, int(seed), estimator, args.voxels, args.fit_options)))
        return 0
    if args.family == "eventsim":
        estimators = args.estimators or EVENT_ESTIMATORS
        rows = []
        for condition in args.conditions:
            for seed in args.seeds:
                for estimator in [*estimators, *(["glmsingle"] if args.reference else [])]:
                    extra = ["--voxels", str(args.voxels)] if args.voxels else []
                    extra += ["--fit-options", json.dumps(args.fit_options)] if args.fit_options else []
                    row = _subprocess(["--one-event", condition, str(seed), estimator, *extra])
                    if row is None:
                        continue
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if args.json:
                        with open(args.json, "a") as handle:
                            handle.write(json.dumps(row) + "\n")
        print()
        print(_table(rows, ["condition", "seed", "estimator", "voxels", "trials", "fit_s", "peak_rss_gb", "median_r",
                            "components", "true_components", "hrf_r", "median_fraction"]))
        print()
        print(_event_summary(rows, args.conditions, estimators))
        return 0

    bids = make_data(args.size, args.data_dir)
    if args.one:
        print(json.dumps(run_one(bids, args.one, args.fit_options)))
        return 0
    rows = []
    for estimator in [*(args.estimators or ESTIMATORS), *(["glmsingle"] if args.reference else [])]:
        options = ["--fit-options", json.dumps(args.fit_options)] if args.fit_options else []
        row = _subprocess(["--size", args.size, "--data-dir", str(args.data_dir), "--one", estimator, *options])
        if row is not None:
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n" + _table(rows))
    reference = next((r for r in rows if r["estimator"] == "glmsingle"), None)
    ours = next((r for r in rows if r["estimator"] == "fithrf-denoise-rr"), None)
    if reference and ours:
        print(f"\nfithrf-denoise-rr vs GLMsingle type D: r {ours['median_r_truth']} vs {reference['median_r_truth']}, "
              f"speed-up {reference['fit_s'] / max(ours['fit_s'], 1e-3):.1f}x, "
              f"peak memory ratio {ours['peak_rss_gb'] / reference['peak_rss_gb']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
