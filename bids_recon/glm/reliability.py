"""Reliability of single-trial betas across repeated stimuli: NSD's noise ceiling."""

from __future__ import annotations

import numpy as np

#: Bytes of float64 betas :func:`noise_ceiling` works on at once (a block of voxels over the repeated trials).
NOISE_CEILING_BLOCK_BYTES = 64 * 2**20


def noise_ceiling(betas: np.ndarray, stim_ids: np.ndarray, n_average: int = 1,
                  block_voxels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Noise-ceiling SNR and noise ceiling per voxel, as NSD defines them (Allen et al. 2022).

    ``ncsnr = sqrt(max(var_signal, 0)) / sd_noise`` where the noise variance is the mean over stimuli
    of the variance across their repeats (ddof 1) and the signal variance is the total variance of the
    repeated trials minus the noise variance; ``NC = 100 * ncsnr^2 / (ncsnr^2 + 1 / n_average)``.

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_voxels)
        Betas (z-scored per session, as NSD does before computing it); a memory map works and is read a
        block of voxels at a time.
    stim_ids : ndarray, shape (n_trials,)
        Only stimuli shown at least twice contribute.
    n_average : int
        Number of trials averaged in the data whose ceiling is wanted (1: single trials; 3: NSD's test
        averages).
    block_voxels : int, optional
        Voxels computed at once; by default as many as fit :data:`NOISE_CEILING_BLOCK_BYTES` (the work arrays
        take about three times that).

    Returns
    -------
    ncsnr : ndarray, shape (n_voxels,)
    nc : ndarray, shape (n_voxels,)
        Percent of variance explainable, for averages of ``n_average`` trials.
    """
    stim_ids = np.asarray(stim_ids).astype(str)
    unique, inverse, counts = np.unique(stim_ids, return_inverse=True, return_counts=True)
    repeated = counts[inverse] >= 2
    n_voxels = betas.shape[1]
    if repeated.sum() < 2:
        nan = np.full(n_voxels, np.nan, dtype=np.float32)
        return nan, nan.copy()
    rows = np.flatnonzero(repeated)
    groups = np.unique(inverse[repeated], return_inverse=True)[1]  # repeated stimuli only, 0..n_repeated-1
    n = np.bincount(groups).astype(float)
    if block_voxels is None:
        block_voxels = max(1, NOISE_CEILING_BLOCK_BYTES // (8 * len(rows)))
    ncsnr = np.empty(n_voxels, dtype=np.float32)
    nc = np.empty(n_voxels, dtype=np.float32)
    for start in range(0, n_voxels, block_voxels):
        stop = min(start + block_voxels, n_voxels)
        b = np.asarray(betas[rows, start:stop], dtype=np.float64)
        sums = np.zeros((len(n), stop - start))
        np.add.at(sums, groups, b)
        within = np.zeros_like(sums)
        np.add.at(within, groups, (b - (sums / n[:, None])[groups]) ** 2)
        noise_var = (within / (n[:, None] - 1)).mean(axis=0)
        signal_var = np.maximum(b.var(axis=0, ddof=1) - noise_var, 0.0)
        block_snr = np.sqrt(signal_var) / np.sqrt(np.maximum(noise_var, 1e-12))
        ncsnr[start:stop] = block_snr
        nc[start:stop] = 100.0 * block_snr**2 / (block_snr**2 + 1.0 / n_average)
    return ncsnr, nc


def noise_ceiling_for_trials(betas: np.ndarray, trials) -> tuple[np.ndarray, np.ndarray]:
    """Single-trial NCSNR and the noise ceiling of the test stimuli's averages (NSD's definitions).

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_voxels)
        Z-scored betas, rows aligned with ``trials``.
    trials : pandas.DataFrame
        The trial table (``stim_id``, ``split``): the ceiling is for averages of as many presentations as a test
        stimulus has (the median count; 1 when there is no test set).

    Returns
    -------
    ncsnr, nc : ndarray, shape (n_voxels,)
        See :func:`noise_ceiling`.
    """
    test = trials.loc[trials["split"] == "test"]
    n_average = int(test.groupby("stim_id").size().median()) if len(test) else 1
    return noise_ceiling(betas, trials["stim_id"].to_numpy(str), n_average=n_average)
