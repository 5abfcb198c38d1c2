"""The signal and noise model of one simulated subject.

All response quantities are in percent signal change. The BOLD time series of voxel ``v`` is::

    bold[t, v] = baseline[v] * (1 + (signal[t, v] + noise[t, v]) / 100)
    signal[t, v] = sum_k amplitudes[k, v] * int_0^d hrf_v(t - onset_k - s) ds
    amplitudes[k, v] = evoked[v] + response[stim_k, v] + jitter[k, v]
    noise[t, v] = ar1[t, v] + shared[t, :] @ loadings[v, :] + drift[t, v]

where each voxel's HRF is normalised so that the response to one 3-s image peaks at its amplitude, ``ar1``
is an AR(1) process with marginal sd ``noise_sd`` and coefficient ``ar1_rho``, ``shared`` holds the
confound series (written, with small measurement noise, to the confounds TSV) and ``drift`` is a sum of
low-order cosines that a standard cosine drift model (high-pass 0.01 Hz) spans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage

from bids_recon.sim.anatomy import Anatomy, subject_mask
from bids_recon.sim.design import (
    boxcar_response,
    canonical_design,
    cosine_drift,
    fmriprep_cosines,
    gamma_difference,
    gamma_difference_integral,
)
from bids_recon.sim.presets import SimPreset
from bids_recon.sim.stimuli import CATEGORIES

HRF_DT = 0.25
"""Sampling step (s) of the stored HRFs."""
HRF_LENGTH = 32.0
"""Length (s) of the stored HRFs."""
KERNEL_DT = 0.1
"""Lag step (s) of the trial-response kernels used to build the time series."""
KERNEL_LENGTH = 36.0
"""Longest lag (s) at which a trial still contributes to the signal."""
HRF_DISPERSION = 0.9

CONFOUND_BASE = (
    "global_signal",
    "csf",
    "white_matter",
    "trans_x",
    "trans_y",
    "trans_z",
    "rot_x",
    "rot_y",
    "rot_z",
)
"""The shared noise series, named as fMRIPrep names the confounds that record them."""

_RHO_GRID = np.linspace(0.0, 0.8, 17)


@dataclass
class SubjectModel:
    """Ground truth and generated data of one subject.

    Voxel arrays are over the subject's brain-mask voxels in ``np.flatnonzero(mask)`` order; the
    ground-truth README (:data:`bids_recon.sim.writers.TRUTH_README`) describes each of them. Not written
    to the npz: ``kernels`` (n_vox, n_lag), the response of each voxel to one trial of unit amplitude at
    lags ``arange(n_lag) * KERNEL_DT``; ``confounds`` and ``shared``, per (session, run), the confounds
    table and the standardised shared noise series (n_vols, 9); ``hrf_params`` (n_vox, 4), each voxel's double-gamma
    delay, undershoot delay, ratio and the gain that makes the response to one ``stim_duration`` image peak at 1
    (trials of other durations are simulated from them). ``n_vols`` is one number for every run or, when runs differ
    in length, ``(session, run) -> volumes``.
    """

    subject: str
    mask: np.ndarray
    voxel_kind: np.ndarray
    signal: np.ndarray
    response: np.ndarray
    amplitudes: np.ndarray
    evoked: np.ndarray
    response_sd: np.ndarray
    hrf_peak: np.ndarray
    hrf_undershoot: np.ndarray
    hrf_ratio: np.ndarray
    hrf: np.ndarray
    prf_x: np.ndarray
    prf_y: np.ndarray
    prf_sigma: np.ndarray
    colour_weights: np.ndarray
    semantic_weights: np.ndarray
    ncsnr_target: np.ndarray
    noise_sd: np.ndarray
    ar1_rho: np.ndarray
    baseline: np.ndarray
    shared_loadings: np.ndarray
    trials: pd.DataFrame
    n_vols: int | Mapping[tuple[str, str], int]
    kernels: np.ndarray
    confounds: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    shared: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    hrf_params: np.ndarray | None = None

    def run_volumes(self, session: str, run: str) -> int:
        """Volumes of one run."""
        return self.n_vols[(session, run)] if isinstance(self.n_vols, Mapping) else int(self.n_vols)

    def truth_arrays(self) -> dict[str, np.ndarray]:
        """The arrays written to ``sub-XX_truth.npz`` (see the ground-truth README)."""
        return {
            "mask": self.mask,
            "voxel_kind": self.voxel_kind,
            "signal": self.signal,
            "response": self.response,
            "amplitudes": self.amplitudes,
            "evoked": self.evoked,
            "response_sd": self.response_sd,
            "hrf_peak": self.hrf_peak,
            "hrf_undershoot": self.hrf_undershoot,
            "hrf_ratio": self.hrf_ratio,
            "hrf": self.hrf,
            "hrf_dt": np.float32(HRF_DT),
            "prf_x": self.prf_x,
            "prf_y": self.prf_y,
            "prf_sigma": self.prf_sigma,
            "colour_weights": self.colour_weights,
            "semantic_weights": self.semantic_weights,
            "ncsnr_target": self.ncsnr_target,
            "noise_sd": self.noise_sd,
            "ar1_rho": self.ar1_rho,
            "baseline": self.baseline,
            "shared_loadings": self.shared_loadings,
        }


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="nearest")
    return (f - f.mean()) / (f.std() + 1e-12)


def _uniform_ranks(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map values to [lo, hi] by rank (uniform marginal, order preserved), shape like ``x``."""
    if x.size == 0:
        return x.astype(float)
    r = np.argsort(np.argsort(x, kind="stable"), kind="stable")
    return lo + (hi - lo) * (r + 0.5) / x.size


def _standardise_columns(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0, keepdims=True)
    return x / (x.std(axis=0, keepdims=True) + 1e-12)


def rf_responses(
    images: np.ndarray, prf_x: np.ndarray, prf_y: np.ndarray, prf_sigma: np.ndarray, rgb_w: np.ndarray
) -> np.ndarray:
    """Linear receptive-field responses (before scaling).

    Parameters
    ----------
    images : ndarray, shape (n_stim, h, w, 3)
        Pixels in [0, 1].
    prf_x, prf_y, prf_sigma : ndarray, shape (n_vox,)
        Centre (fraction of width/height from the top-left) and sd (fraction of width).
    rgb_w : ndarray, shape (n_vox, 3)
        Weight of each colour channel.

    Returns
    -------
    ndarray, shape (n_stim, n_vox)
        ``sum_pixels gauss_v(pixel) * (rgb_w[v] . rgb(pixel))``, Gaussians normalised to unit sum.
    """
    n, h, w, _ = images.shape
    ys = (np.arange(h) + 0.5) / h
    xs = (np.arange(w) + 0.5) / w
    gy = np.exp(-0.5 * ((ys[None, :] - prf_y[:, None]) / prf_sigma[:, None]) ** 2)
    gx = np.exp(-0.5 * ((xs[None, :] - prf_x[:, None]) / prf_sigma[:, None]) ** 2)
    g = (gy[:, :, None] * gx[:, None, :]).reshape(len(prf_x), h * w)
    g /= g.sum(1, keepdims=True)
    flat = images.reshape(n, h * w, 3).astype(np.float32)
    out = np.zeros((n, len(prf_x)), dtype=np.float64)
    for c in range(3):
        out += (flat[:, :, c] @ g.T.astype(np.float32)) * rgb_w[:, c][None, :]
    return out


def _lag_index(frame_times: np.ndarray, onsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kernel lag index of each (volume, trial) and whether the lag is inside the kernel."""
    tau = frame_times[:, None] - onsets[None, :]
    idx = np.rint(tau / KERNEL_DT).astype(int)
    n_lag = int(round(KERNEL_LENGTH / KERNEL_DT))
    ok = (idx >= 0) & (idx < n_lag)
    return np.where(ok, idx, 0), ok


def _confound_series(rng: np.random.Generator, n_vols: int) -> np.ndarray:
    """Shared noise series, standardised, shape (n_vols, 9) in :data:`CONFOUND_BASE` order."""
    out = np.empty((n_vols, len(CONFOUND_BASE)))
    for c in range(3):  # physiological: smooth AR(1)
        e = rng.standard_normal(n_vols)
        x = np.empty(n_vols)
        x[0] = e[0]
        rho = (0.9, 0.8, 0.8)[c]
        for t in range(1, n_vols):
            x[t] = rho * x[t - 1] + np.sqrt(1 - rho**2) * e[t]
        out[:, c] = x
    # motion: smoothed random walk with an occasional jump
    steps = rng.standard_normal((n_vols, 6)) * 0.3
    jumps = (rng.uniform(size=(n_vols, 6)) < 0.01) * rng.standard_normal((n_vols, 6)) * 3
    walk = np.cumsum(steps + jumps, axis=0)
    out[:, 3:] = ndimage.gaussian_filter1d(walk, 1.0, axis=0)
    return _standardise_columns(out)


def confounds_table(
    rng: np.random.Generator, series: np.ndarray, tr: float, mean_baseline: float, meas_noise: float
) -> pd.DataFrame:
    """An fMRIPrep-style confounds table recording the shared noise series.

    Parameters
    ----------
    rng : numpy.random.Generator
        Randomness of the measurement noise and offsets.
    series : ndarray, shape (n_vols, 9)
        Standardised shared series (:data:`CONFOUND_BASE` order).
    tr : float
        Repetition time.
    mean_baseline : float
        Mean BOLD intensity in the brain (sets the scale of the signal columns).
    meas_noise : float
        Measurement noise added to each written series, relative to its sd.

    Returns
    -------
    DataFrame
        Columns as fMRIPrep names them; the first row of derivative columns and of
        framewise_displacement is NaN (written as ``n/a``).
    """
    n_vols = series.shape[0]
    noisy = series + meas_noise * rng.standard_normal(series.shape)
    offsets = np.array(
        [mean_baseline, 1.35 * mean_baseline, 0.9 * mean_baseline, *rng.normal(0, 0.05, 3), *rng.normal(0, 4e-4, 3)]
    )
    scales = np.array(
        [0.003 * mean_baseline, 0.006 * mean_baseline, 0.002 * mean_baseline, 0.06, 0.06, 0.06, 8e-4, 8e-4, 8e-4]
    )
    values = offsets[None, :] + scales[None, :] * noisy
    cols: dict[str, np.ndarray] = {}
    for j, name in enumerate(CONFOUND_BASE):
        x = values[:, j]
        d = np.concatenate([[np.nan], np.diff(x)])
        cols[name] = x
        cols[f"{name}_derivative1"] = d
        cols[f"{name}_power2"] = x**2
        cols[f"{name}_derivative1_power2"] = d**2
    trans = values[:, 3:6]
    rot = values[:, 6:9]
    fd = np.abs(np.diff(trans, axis=0)).sum(1) + 50.0 * np.abs(np.diff(rot, axis=0)).sum(1)
    cols["framewise_displacement"] = np.concatenate([[np.nan], fd])
    cos = fmriprep_cosines(n_vols, tr)
    for k in range(cos.shape[1]):
        cols[f"cosine{k:02d}"] = cos[:, k]
    return pd.DataFrame(cols)


def make_confounds(
    rng: np.random.Generator, preset: SimPreset, n_vols: int | Mapping[tuple[str, str], int]
) -> tuple[dict[tuple[str, str], np.ndarray], dict[tuple[str, str], pd.DataFrame]]:
    """Shared noise series and confounds tables of every run of one subject.

    Parameters
    ----------
    rng : numpy.random.Generator
        Randomness of the series.
    preset : SimPreset
        Sessions, runs, TR, measurement noise.
    n_vols : int or mapping
        Volumes per run, or ``(session, run) -> volumes``.

    Returns
    -------
    shared : dict
        ``(session, run) -> ndarray (n_vols, 9)``, standardised series in :data:`CONFOUND_BASE` order.
    tables : dict
        ``(session, run) -> DataFrame``, fMRIPrep-style confounds (see :func:`confounds_table`).
    """
    shared: dict[tuple[str, str], np.ndarray] = {}
    tables: dict[tuple[str, str], pd.DataFrame] = {}
    level = 1000.0 * rng.uniform(0.9, 1.1)
    for ses in range(preset.n_sessions):
        for run in range(preset.n_runs):
            key = (f"{ses + 1:02d}", f"{run + 1:02d}")
            shared[key] = _confound_series(rng, n_vols[key] if isinstance(n_vols, Mapping) else n_vols)
            tables[key] = confounds_table(rng, shared[key], preset.tr, level, preset.confound_noise)
    return shared, tables


@dataclass
class _DesignStats:
    """Per-subject statistics of the canonical LSA estimator (pooled over runs)."""

    diag: np.ndarray  # (n_trials, n_lag): gain of trial k's beta on its own kernel
    total: np.ndarray  # (n_trials, n_lag): sum over all trials j of the U_kj rows
    offdiag_gram: np.ndarray  # (n_lag, n_lag)
    ar_var: np.ndarray  # (n_rho,) mean over trials of diag(P Sigma_rho P')

    @property
    def n_trials(self) -> int:
        return self.diag.shape[0]


def _design_stats(
    runs: list[tuple[np.ndarray, np.ndarray]], duration: float | list[np.ndarray], n_vols: int | list[int],
    tr: float,
) -> _DesignStats:
    """Statistics of the LSA estimator ``beta = P y`` for the runs of one subject.

    Parameters
    ----------
    runs : list of (onsets, base_confounds)
        Per run: trial onsets (n_trials_run,) and confound regressors (n_vols, n_conf).
    duration, n_vols, tr : float, int, float
        Trial duration, volumes per run, TR; ``duration`` may be a list of per-trial durations per run and
        ``n_vols`` a list of volumes per run.
    """
    n_lag = int(round(KERNEL_LENGTH / KERNEL_DT))
    diags, totals, ar = [], [], []
    gram = np.zeros((n_lag, n_lag))
    for r, (onsets, conf) in enumerate(runs):
        nv = n_vols if isinstance(n_vols, int) else n_vols[r]
        dur = duration[r] if isinstance(duration, list) else duration
        ft = np.arange(nv) * tr
        lags = np.abs(np.arange(nv)[:, None] - np.arange(nv)[None, :])
        n_tr = len(onsets)
        x = canonical_design(onsets, dur, nv, tr, conf)
        p = np.linalg.pinv(x)[:n_tr]  # (n_tr, n_vols)
        idx, ok = _lag_index(ft, onsets)
        u = np.zeros((n_tr, n_tr, n_lag))
        for j in range(n_tr):
            t = np.flatnonzero(ok[:, j])
            u[:, j, idx[t, j]] = p[:, t]
        kk = np.arange(n_tr)
        diags.append(u[kk, kk, :])
        totals.append(u.sum(1))
        u[kk, kk, :] = 0.0
        flat = u.reshape(-1, n_lag)
        gram += flat.T @ flat
        ar.append(np.stack([((p @ (rho**lags)) * p).sum(1) for rho in _RHO_GRID]))
    return _DesignStats(
        diag=np.concatenate(diags),
        total=np.concatenate(totals),
        offdiag_gram=gram,
        ar_var=np.concatenate(ar, axis=1).mean(1),
    )


def _calibrate_noise(
    stats: _DesignStats,
    kernels: np.ndarray,
    rho: np.ndarray,
    response_sd: np.ndarray,
    jitter_sd: np.ndarray,
    evoked: np.ndarray,
    target: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Time-series noise sd that gives each voxel its target single-trial ncsnr under LSA.

    With ``beta_k = sum_j G_kj a_j + noise_k`` (``G`` from the canonical design and the voxel's true
    kernel), the expected across-stimulus signal variance of the betas is ``mean(G_kk)^2 sd_r^2`` and the
    within-stimulus (noise) variance is ``sigma^2 v(rho) + mean(G_kk)^2 sd_j^2 + leak (sd_r^2 + sd_j^2)
    + var_k(sum_j G_kj) e^2 + var_k(G_kk) sd_r^2``; solve ``signal / noise = target^2`` for ``sigma``.

    Parameters
    ----------
    stats : _DesignStats
        Design statistics.
    kernels : ndarray, shape (n_vox, n_lag)
        Trial-response kernels of the voxels.
    rho, response_sd, jitter_sd, evoked, target : ndarray, shape (n_vox,)
        AR(1) coefficients, response sd, trial jitter sd, mean evoked response, target ncsnr.

    Returns
    -------
    sigma : ndarray, shape (n_vox,)
        Marginal sd of the AR(1) noise (% signal change).
    achieved : ndarray, shape (n_vox,)
        Expected ncsnr (equal to ``target`` unless the target was out of reach).
    """
    gk = kernels @ stats.diag.T  # (n_vox, n_trials)
    g = gk.mean(1)
    var_g = gk.var(1)
    leak = np.einsum("vl,lm,vm->v", kernels, stats.offdiag_gram, kernels) / stats.n_trials
    var_tot = (kernels @ stats.total.T).var(1)
    v = np.interp(rho, _RHO_GRID, stats.ar_var)
    sig_var = g**2 * response_sd**2
    other = g**2 * jitter_sd**2 + leak * (response_sd**2 + jitter_sd**2) + var_tot * evoked**2
    other = other + var_g * response_sd**2
    need = sig_var / target**2 - other
    floor = 0.1 * sig_var / target**2
    sigma2 = np.maximum(need, floor) / v
    achieved = np.sqrt(sig_var / (sigma2 * v + other))
    return np.sqrt(sigma2), achieved


def simulate_subject(
    preset: SimPreset,
    anat: Anatomy,
    images: np.ndarray,
    stim_table: pd.DataFrame,
    trials: pd.DataFrame,
    n_vols: int | Mapping[tuple[str, str], int],
    subject: str,
    shared: dict[tuple[str, str], np.ndarray],
    confounds: dict[tuple[str, str], pd.DataFrame],
    rng: np.random.Generator,
    features: np.ndarray | None = None,
) -> SubjectModel:
    """Draw one subject's voxel parameters, responses, noise settings and confound series.

    Parameters
    ----------
    preset : SimPreset
        Settings.
    anat : Anatomy
        Template (atlas, coordinates).
    images : ndarray, shape (n_stim, h, w, 3)
        Stimuli in stim_id order.
    stim_table : DataFrame
        Stimulus table (category, size...).
    trials : DataFrame
        The subject's trial table (trials whose ``duration`` is not the preset's ``stim_duration`` respond with
        the voxel's HRF integrated over their own duration).
    n_vols : int or mapping
        Volumes per run, or ``(session, run) -> volumes`` when runs differ in length.
    subject : str
        Label.
    shared, confounds : dict
        Per (session, run): the standardised shared noise series, shape (n_vols, 9), and the confounds
        table recording them (see :func:`make_confounds`).
    rng : numpy.random.Generator
        Subject's randomness.
    features : ndarray, shape (n_stim, n_features), optional
        Per-stimulus features (e.g. the latents the faces layout generated its images from): higher-visual
        signal voxels then respond linearly to them (``semantic_weights`` per feature) instead of to the
        object category and size.

    Returns
    -------
    SubjectModel
        Everything but the BOLD data (see :func:`bold_run`).
    """
    shape = anat.mask.shape
    mask = subject_mask(anat, rng)
    vox = np.flatnonzero(mask)
    n_vox = len(vox)
    labels = anat.atlas.ravel()[vox]
    u, v, w = (anat.coords[..., i].ravel()[vox] for i in range(3))
    is_early = np.isin(labels, anat.early_labels)
    is_higher = np.isin(labels, anat.higher_labels)
    visual = is_early | is_higher

    # signal voxels: a smooth random field thresholded within each ROI (clustered, ~signal_fraction)
    sel = _smooth(rng, shape, 1.2).ravel()[vox]
    signal = np.zeros(n_vox, dtype=bool)
    for roi in (is_early, is_higher):
        if roi.any():
            thr = np.quantile(sel[roi], 1 - preset.signal_fraction)
            signal |= roi & (sel > thr)
    kind = np.zeros(n_vox, dtype=np.int8)
    kind[signal & is_early] = 1
    kind[signal & is_higher] = 2

    # HRFs: time to peak ~U(4, 7) s, spatially smooth; undershoot later by 8-12 s, ratio 0.2-0.45
    peak_field = _smooth(rng, shape, 2.0).ravel()[vox] + 0.5 * rng.standard_normal(n_vox)
    t_peak = _uniform_ranks(peak_field, 4.0, 7.0)
    delay = t_peak + HRF_DISPERSION
    under = delay + rng.uniform(8.0, 12.0, n_vox)
    ratio = rng.uniform(0.2, 0.45, n_vox)
    # normalise each HRF so that the response to one image peaks at 1 (the peak lies in the window)
    lags = np.arange(int(round(KERNEL_LENGTH / KERNEL_DT))) * KERNEL_DT
    window = (lags >= 2.5) & (lags <= 10.0 + preset.stim_duration / 2)
    peak_resp = boxcar_response(lags[window], preset.stim_duration, delay, under, ratio)
    norm = 1.0 / peak_resp.max(1)
    # response to one trial of amplitude 1, shape (n_vox, n_lag); only visual-label voxels respond
    kernels = np.zeros((n_vox, lags.size))
    kernels[visual] = boxcar_response(lags, preset.stim_duration, delay[visual], under[visual], ratio[visual])
    kernels *= norm[:, None]
    t_h = np.arange(int(round(HRF_LENGTH / HRF_DT))) * HRF_DT
    hrf = (gamma_difference(t_h, delay, under, ratio) * norm[:, None]).astype(np.float32)
    t_fine = np.arange(0, HRF_LENGTH, 0.05)
    h_fine = gamma_difference(t_fine, delay, under, ratio)
    hrf_peak = t_fine[np.argmax(h_fine, axis=1)].astype(np.float32)
    hrf_under = t_fine[np.argmin(h_fine, axis=1)].astype(np.float32)

    # responses
    n_stim = len(stim_table)
    response = np.zeros((n_stim, n_vox), dtype=np.float64)
    response_sd = np.zeros(n_vox)
    response_sd[signal] = rng.uniform(*preset.signal_sd_range, int(signal.sum()))
    prf_x = np.full(n_vox, np.nan)
    prf_y = np.full(n_vox, np.nan)
    prf_sigma = np.full(n_vox, np.nan)
    rgb_w = np.full((n_vox, 3), np.nan)
    e1 = np.flatnonzero(kind == 1)
    if e1.size:
        # retinotopy: left hemisphere -> right visual field; dorsal (cuneus) -> lower field
        jit = 0.25
        prf_x[e1] = _uniform_ranks(-u[e1] + jit * rng.standard_normal(e1.size), 0.08, 0.92)
        prf_y[e1] = _uniform_ranks(w[e1] + jit * rng.standard_normal(e1.size), 0.08, 0.92)
        ecc = np.hypot(prf_x[e1] - 0.5, prf_y[e1] - 0.5) / np.sqrt(0.5)
        lo, hi = preset.prf_sigma_range
        prf_sigma[e1] = np.clip(lo + (hi - lo) * ecc + 0.02 * rng.standard_normal(e1.size), lo, hi)
        lum = rng.normal(1.0, 0.2, e1.size)
        rg = rng.normal(0.0, 0.6, e1.size)
        by = rng.normal(0.0, 0.6, e1.size)
        # luminance (R+G+B)/3, red-green R-G, blue-yellow B-(R+G)/2
        rgb_w[e1] = (
            lum[:, None] * np.array([1 / 3, 1 / 3, 1 / 3])
            + rg[:, None] * np.array([1.0, -1.0, 0.0])
            + by[:, None] * np.array([-0.5, -0.5, 1.0])
        )
        raw = rf_responses(images, prf_x[e1], prf_y[e1], prf_sigma[e1], rgb_w[e1])
        response[:, e1] = _standardise_columns(raw) * response_sd[e1]
    n_cat = len(CATEGORIES) if features is None else features.shape[1]
    sem_w = np.zeros((n_vox, n_cat))
    e2 = np.flatnonzero(kind == 2)
    if e2.size:
        fields = np.stack([_smooth(rng, shape, 1.5).ravel()[vox[e2]] for _ in range(n_cat)], 1)
        sem_w[e2] = 0.7 * fields + 0.5 * rng.standard_normal((e2.size, n_cat))
        if features is None:
            onehot = (stim_table["category"].to_numpy()[:, None] == np.asarray(CATEGORIES)[None, :]).astype(float)
            size_z = stim_table["size"].to_numpy(float)
            size_z = (size_z - size_z.mean()) / (size_z.std() + 1e-12)
            size_w = rng.normal(0.0, 0.25, e2.size)
            raw = onehot @ sem_w[e2].T + size_z[:, None] * size_w[None, :]
        else:  # linear in the (standardised) features
            raw = _standardise_columns(np.asarray(features, dtype=np.float64)) @ sem_w[e2].T
        response[:, e2] = _standardise_columns(raw) * response_sd[e2]

    evoked = np.zeros(n_vox)
    evoked[visual] = np.clip(rng.normal(preset.evoked_mean, preset.evoked_sd, int(visual.sum())), 0.2, None)
    jitter_sd = np.where(signal, preset.trial_jitter * response_sd, np.where(visual, preset.trial_jitter, 0.0))
    row_of = trials["stim_id"].to_numpy() - 1
    amplitudes = evoked[None, :] + response[row_of] + jitter_sd[None, :] * rng.standard_normal(
        (len(trials), n_vox)
    )
    amplitudes[:, ~visual] = 0.0

    # noise settings
    rho = rng.uniform(*preset.ar1_range, n_vox)
    target = np.zeros(n_vox)
    target[signal] = np.clip(
        preset.ncsnr_median * np.exp(preset.ncsnr_log_sd * rng.standard_normal(int(signal.sum()))),
        *preset.ncsnr_range,
    )
    baseline = 1000.0 * (1 + 0.1 * _smooth(rng, shape, 3.0).ravel()[vox]) * rng.uniform(0.9, 1.1)
    groups = list(trials.groupby(["session", "run"], sort=True))
    calib_runs = [
        (tr_run["onset"].to_numpy(float), confounds[key][list(CONFOUND_BASE)].to_numpy())
        for key, tr_run in groups
    ]
    calib_vols: int | list[int] = n_vols if not isinstance(n_vols, Mapping) else [n_vols[k] for k, _ in groups]
    calib_dur: float | list[np.ndarray] = preset.stim_duration
    if not np.allclose(trials["duration"].to_numpy(float), preset.stim_duration):
        calib_dur = [g["duration"].to_numpy(float) for _, g in groups]
    noise_sd = np.zeros(n_vox)
    if signal.any():
        stats = _design_stats(calib_runs, calib_dur, calib_vols, preset.tr)
        s_idx = np.flatnonzero(signal)
        sig, achieved = _calibrate_noise(
            stats, kernels[s_idx], rho[s_idx], response_sd[s_idx], jitter_sd[s_idx], evoked[s_idx], target[s_idx]
        )
        noise_sd[s_idx] = sig
        target[s_idx] = achieved
        log_sd = np.log(sig)
        loc, scale = float(np.median(log_sd)), float(max(np.std(log_sd), 0.1))
    else:  # pragma: no cover - only with signal_fraction=0
        loc, scale = np.log(3.0), 0.2
    others = ~signal
    noise_sd[others] = np.exp(loc + scale * rng.standard_normal(int(others.sum())))

    raw_load = np.concatenate(
        [
            rng.normal(0.6, 0.15, (n_vox, 1)),
            rng.normal(0.0, 0.3, (n_vox, 2)),
            rng.normal(0.0, 0.25, (n_vox, 6)),
        ],
        axis=1,
    )
    raw_load /= np.linalg.norm(raw_load, axis=1, keepdims=True)
    loadings = raw_load * (preset.shared_noise * noise_sd)[:, None]

    f32 = np.float32
    return SubjectModel(
        subject=subject,
        mask=mask,
        voxel_kind=kind,
        signal=signal,
        response=response.astype(f32),
        amplitudes=amplitudes.astype(f32),
        evoked=evoked.astype(f32),
        response_sd=response_sd.astype(f32),
        hrf_peak=hrf_peak,
        hrf_undershoot=hrf_under,
        hrf_ratio=ratio.astype(f32),
        hrf=hrf,
        prf_x=prf_x.astype(f32),
        prf_y=prf_y.astype(f32),
        prf_sigma=prf_sigma.astype(f32),
        colour_weights=rgb_w.astype(f32),
        semantic_weights=sem_w.astype(f32),
        ncsnr_target=target.astype(f32),
        noise_sd=noise_sd.astype(f32),
        ar1_rho=rho.astype(f32),
        baseline=baseline.astype(f32),
        shared_loadings=loadings.astype(f32),
        trials=trials,
        n_vols=n_vols,
        confounds=confounds,
        shared=shared,
        kernels=kernels,
        hrf_params=np.stack([delay, under, ratio, norm], axis=1),
    )


def bold_run(
    model: SubjectModel, preset: SimPreset, session: str, run: str, rng: np.random.Generator
) -> np.ndarray:
    """BOLD time series of one run over the subject's brain-mask voxels.

    Parameters
    ----------
    model : SubjectModel
        The subject.
    preset : SimPreset
        Settings (TR, drift).
    session, run : str
        Labels of the run.
    rng : numpy.random.Generator
        Randomness of this run's noise (AR(1) innovations, drift).

    Returns
    -------
    ndarray, shape (n_vols, n_vox), float32
        Intensities (baseline ~1000).
    """
    n_vols = model.run_volumes(session, run)
    ft = np.arange(n_vols) * preset.tr
    sel = (model.trials["session"] == session) & (model.trials["run"] == run)
    rows = np.flatnonzero(sel.to_numpy())
    onsets = model.trials["onset"].to_numpy(float)[rows]
    durations = model.trials["duration"].to_numpy(float)[rows]
    active = np.flatnonzero(np.any(model.amplitudes != 0, axis=0))
    pct = np.zeros((n_vols, model.mask.sum()), dtype=np.float64)
    if active.size:
        idx, ok = _lag_index(ft, onsets)
        kern = model.kernels[active]
        own = {}  # trials of another duration than the preset's: the HRF integrated over their own duration
        if model.hrf_params is not None and not np.allclose(durations, preset.stim_duration):
            n_lag = model.kernels.shape[1]
            lags = np.arange(n_lag) * KERNEL_DT
            delay, under, ratio, gain = model.hrf_params[active].T
            running = gamma_difference_integral(lags, delay, under, ratio)  # int_0^lag h
            for d in np.unique(durations):
                steps = float(d) / KERNEL_DT
                if abs(steps - round(steps)) < 1e-6:  # on the lag grid: int_{lag-d}^{lag} h by a shift
                    shifted = np.zeros_like(running)
                    shifted[:, int(round(steps)):] = running[:, : n_lag - int(round(steps))]
                    own[d] = (running - shifted) * gain[:, None]
                else:
                    own[d] = boxcar_response(lags, float(d), delay, under, ratio) * gain[:, None]
        amps = model.amplitudes[rows][:, active].astype(np.float64)
        sig = np.zeros((n_vols, active.size))
        for k in range(len(rows)):
            t = np.flatnonzero(ok[:, k])
            sig[t] += own.get(durations[k], kern)[:, idx[t, k]].T * amps[k][None, :]
        pct[:, active] = sig
    # AR(1) noise with marginal sd noise_sd
    sd = model.noise_sd.astype(np.float64)
    rho = model.ar1_rho.astype(np.float64)
    e = rng.standard_normal((n_vols, sd.size))
    ar = np.empty_like(e)
    ar[0] = e[0]
    innov = np.sqrt(1 - rho**2)
    for t in range(1, n_vols):
        ar[t] = rho * ar[t - 1] + innov * e[t]
    pct += ar * sd[None, :]
    # shared (confound-recorded) noise
    pct += model.shared[(session, run)] @ model.shared_loadings.T.astype(np.float64)
    # slow drift inside the span of a 0.01 Hz cosine drift model
    basis = cosine_drift(n_vols, preset.tr)[:, :3] * np.sqrt(n_vols / 2.0)
    if basis.shape[1]:
        coef = rng.normal(0.0, preset.drift_sd, (basis.shape[1], sd.size))
        pct += basis @ coef
    return (model.baseline.astype(np.float64)[None, :] * (1 + pct / 100.0)).astype(np.float32)
