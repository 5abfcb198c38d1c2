"""Reliability of single-trial betas across repeated stimuli: NSD's noise ceiling."""

from __future__ import annotations

import numpy as np


def noise_ceiling(betas: np.ndarray, stim_ids: np.ndarray, n_average: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Noise-ceiling SNR and noise ceiling per voxel, as NSD defines them (Allen et al. 2022).

    ``ncsnr = sqrt(max(var_signal, 0)) / sd_noise`` where the noise variance is the mean over stimuli
    of the variance across their repeats (ddof 1) and the signal variance is the total variance of the
    repeated trials minus the noise variance; ``NC = 100 * ncsnr^2 / (ncsnr^2 + 1 / n_average)``.

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_voxels)
        Betas (z-scored per session, as NSD does before computing it).
    stim_ids : ndarray, shape (n_trials,)
        Only stimuli shown at least twice contribute.
    n_average : int
        Number of trials averaged in the data whose ceiling is wanted (1: single trials; 3: NSD's test
        averages).

    Returns
    -------
    ncsnr : ndarray, shape (n_voxels,)
    nc : ndarray, shape (n_voxels,)
        Percent of variance explainable, for averages of ``n_average`` trials.
    """
    stim_ids = np.asarray(stim_ids).astype(str)
    unique, inverse, counts = np.unique(stim_ids, return_inverse=True, return_counts=True)
    repeated = counts[inverse] >= 2
    if repeated.sum() < 2:
        nan = np.full(betas.shape[1], np.nan, dtype=np.float32)
        return nan, nan.copy()
    b = np.asarray(betas[repeated], dtype=np.float64)
    groups = inverse[repeated]
    n_groups = len(unique)
    sums = np.zeros((n_groups, b.shape[1]))
    np.add.at(sums, groups, b)
    n = np.bincount(groups, minlength=n_groups).astype(float)
    used = n >= 2
    within = np.zeros_like(sums)
    np.add.at(within, groups, (b - (sums / np.maximum(n, 1)[:, None])[groups]) ** 2)
    noise_var = (within[used] / (n[used, None] - 1)).mean(axis=0)
    total_var = b.var(axis=0, ddof=1)
    signal_var = np.maximum(total_var - noise_var, 0.0)
    ncsnr = np.sqrt(signal_var) / np.sqrt(np.maximum(noise_var, 1e-12))
    nc = 100.0 * ncsnr**2 / (ncsnr**2 + 1.0 / n_average)
    return ncsnr.astype(np.float32), nc.astype(np.float32)
