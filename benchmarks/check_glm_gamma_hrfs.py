"""A third single-trial simulation, written apart from bids_recon.sim and bids_recon.sim.eventsim, as a check on
data neither estimator was tuned on: gamma-variate HRFs (SPM-like, random peak 3.5-7 s and undershoot; not
GLMsingle's library), onsets jittered off the TR grid (+-0.7 s), amplitudes 1 + 1.4 z that repeat with
correlation 0.3-0.5, shared random walks + a slow sine + spikes in no confound, linear + quadratic drift, AR(1).

    OMP_NUM_THREADS=1 python benchmarks/check_glm_gamma_hrfs.py [--glmsingle]

Prints, per condition and seed, the median r (signal voxels, estimated vs true amplitudes) and fit time of LSA,
LSS, the default and (``--glmsingle``) GLMsingle type D with its defaults (its design: onsets rounded to volumes).
"""
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from scipy.stats import gamma  # noqa: E402

from bids_recon.glm import GlmParams, SessionRun, fit_session  # noqa: E402
from bids_recon.glm.singletrial import percent_signal_change  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_glm import glmsingle_fit, median_r  # noqa: E402


def hrf(t: np.ndarray, peak: float, under: float, ratio: float) -> np.ndarray:
    """SPM-like double gamma, its peak scaled to 1."""
    h = gamma.pdf(t, peak) - ratio * gamma.pdf(t, under)
    return h / h.max()


def simulate(seed: int, n_runs: int = 2, n_vol: int = 200, tr: float = 1.5, soa: float = 4.5, dur: float = 3.0,
             n_vox: int = 5000, n_rep: int = 2, rep_r: float = 0.3, shared: int = 4, snr: float = 1.0):
    """Raw runs ``[(raw (n_vol, n_vox), onsets, stim ids)]``, true amplitudes (trials, n_vox), signal mask."""
    rng = np.random.default_rng(seed)
    dt = 0.1
    per_run = int((n_vol * tr - 20) // soa)
    n_trials = per_run * n_runs
    n_stim = n_trials // n_rep
    stims = rng.permutation(np.repeat(np.arange(n_stim), n_rep))[:n_trials]
    signal = rng.random(n_vox) < 0.3
    peaks = rng.uniform(3.5, 7.0, n_vox)
    unders = peaks + rng.uniform(7, 12, n_vox)
    ratios = rng.uniform(0.1, 0.4, n_vox)
    t = np.arange(0, 32, dt)
    stim_amp = rng.normal(0, 1, (n_stim, n_vox))
    trial_amp = 1 + 1.4 * (np.sqrt(rep_r) * stim_amp[stims]
                           + np.sqrt(1 - rep_r) * rng.normal(0, 1, (n_trials, n_vox)))
    trial_amp *= rng.uniform(0.5, 1.5, n_vox) * signal
    bins = np.digitize(peaks, np.linspace(3.5, 7.0, 41))  # 40 HRF groups keep the convolutions few
    runs, k = [], 0
    for _ in range(n_runs):
        onsets = 8 + np.arange(per_run) * soa + rng.uniform(-0.7, 0.7, per_run)
        fine = int(n_vol * tr / dt) + len(t)
        boxcars = np.zeros((fine, per_run))
        for j, onset in enumerate(onsets):
            start = int(round(onset / dt))
            boxcars[start:start + int(dur / dt), j] = 1
        volumes = (np.arange(n_vol) * tr / dt).astype(int)
        bold = np.zeros((n_vol, n_vox))
        amps = trial_amp[k:k + per_run]
        for b in np.unique(bins):
            vox = np.flatnonzero(bins == b)
            h = hrf(t, peaks[vox].mean(), unders[vox].mean(), ratios[vox].mean())
            conv = np.stack([np.convolve(boxcars[:, j], h)[:fine] * dt for j in range(per_run)], 1)[volumes]
            bold[:, vox] = conv / np.abs(conv).max() @ amps[:, vox]
        ar = np.zeros((n_vol, n_vox))
        white = rng.normal(0, 1, (n_vol, n_vox))
        rho = rng.uniform(0.2, 0.6, n_vox)
        for i in range(n_vol):
            ar[i] = (rho * ar[i - 1] if i else 0) + white[i]
        walks = np.cumsum(rng.normal(0, 1, (n_vol, shared)), 0)
        walks = (walks - walks.mean(0)) / walks.std(0)
        sine = np.sin(2 * np.pi * np.arange(n_vol) * tr / rng.uniform(20, 60))[:, None]
        spikes = np.zeros((n_vol, 1))
        spikes[rng.choice(n_vol, 3, replace=False)] = rng.normal(0, 5, (3, 1))
        components = np.hstack([walks, sine, spikes])
        loadings = (rng.lognormal(0, 0.5, (components.shape[1], n_vox))
                    * rng.choice([-1, 1], (components.shape[1], n_vox)))
        x = np.linspace(-1, 1, n_vol)[:, None]
        drift = x * rng.normal(0, 2, n_vox) + (x**2) * rng.normal(0, 2, n_vox)
        scale = bold[:, signal].std() / snr
        noise = (ar / ar.std() + 0.7 * components @ loadings / np.sqrt(components.shape[1])) * scale + drift
        base = rng.uniform(800, 1200, n_vox)
        runs.append(((base * (1 + (bold + noise) / 100)).astype(np.float32), onsets, stims[k:k + per_run].astype(str)))
        k += per_run
    return runs, trial_amp, signal, tr, dur


def session(runs, tr: float, dur: float) -> list[SessionRun]:
    out = []
    for raw, onsets, stims in runs:
        psc, _ = percent_signal_change(raw)
        out.append(SessionRun(data=psc, onsets=onsets, durations=np.full(len(onsets), dur), stim_ids=stims,
                              repetition_time=tr, mean_intensity=raw.mean(0)))
    return out


CONDITIONS = {
    "fast-2run": {},
    "fast-3rep": {"n_runs": 3, "n_rep": 3, "rep_r": 0.5},
    "slow-tr2": {"tr": 2.0, "soa": 8.0, "dur": 2.0, "n_vol": 180, "n_runs": 3},
    "tr0.8": {"tr": 0.8, "n_vol": 375, "soa": 4.0, "dur": 1.0, "n_runs": 2},
    "low-snr": {"snr": 0.5, "n_runs": 3},
}


def main() -> None:
    for name, options in CONDITIONS.items():
        for seed in (11, 12):
            runs, amplitudes, signal, tr, dur = simulate(seed, **options)
            row = {}
            for estimator in ("lsa", "lss", "fithrf-denoise-rr"):
                start = time.perf_counter()
                fit = fit_session(session(runs, tr, dur), GlmParams(estimator=estimator))
                row[estimator] = (median_r(np.concatenate(fit.betas), amplitudes, signal), time.perf_counter() - start)
            if "--glmsingle" in sys.argv:
                ref = glmsingle_fit([r[0] for r in runs], [np.round(r[1] / tr).astype(int) for r in runs],
                                    [r[2] for r in runs], tr, dur)
                row["glmsingle-D"] = (median_r(ref.get("typed", ref["typeb"]), amplitudes, signal), ref["fit_s"])
            print(name, seed, " ".join(f"{k} {v[0]:.3f} ({v[1]:.1f} s)" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
