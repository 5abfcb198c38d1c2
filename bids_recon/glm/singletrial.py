"""Percent signal change of the single-trial GLMs' data and session z-scoring of their betas.

Plain functions on arrays: ``data`` is a run's time series restricted to the brain mask, shaped
``(n_volumes, n_voxels)``. The estimators are in :mod:`bids_recon.glm.estimators`; the events and confounds readers
in :mod:`bids_recon.design`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TRIAL_PREFIX", "percent_signal_change", "zscore_by_group"]

#: Prefix of the per-trial regressors in the design matrix (zero-padded index follows).
TRIAL_PREFIX = "trial_"


def percent_signal_change(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale each voxel's time series to percent signal change around its mean.

    Parameters
    ----------
    data : ndarray, shape (n_volumes, n_voxels)

    Returns
    -------
    psc : ndarray, shape (n_volumes, n_voxels), float32
    usable : ndarray of bool, shape (n_voxels,)
        False for voxels whose mean is not positive or that contain NaN/inf (their PSC is 0).
    """
    data = np.asarray(data, dtype=np.float32)
    finite = np.isfinite(data).all(axis=0)
    with np.errstate(invalid="ignore", over="ignore"):  # voxels with NaN/inf are unusable whatever these give
        mean = data.mean(axis=0)
        spread = data.std(axis=0)
    usable = finite & (mean > 0) & (spread > 0)
    safe_mean = np.where(usable, mean, 1.0).astype(np.float32)
    psc = data / safe_mean
    psc -= 1.0
    psc *= 100.0
    psc[:, ~usable] = 0.0
    return psc, usable


def zscore_by_group(betas: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Z-score each voxel's betas within each group of trials (e.g. a session).

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_voxels)
    groups : ndarray, shape (n_trials,)
        Group label of each trial; never missing (a dataset without sessions is one group, labelled ``n/a``).

    Returns
    -------
    ndarray, shape (n_trials, n_voxels), float32; constant voxels become 0.

    Raises
    ------
    bids_recon.errors.InvariantError
        A group label is missing (NaN, None, empty), or the shapes disagree.
    """
    from bids_recon.invariants import check_labels, check_shape

    groups = np.asarray(groups, dtype=object)
    check_shape(groups, (betas.shape[0],), "z-scoring group labels", meaning=("rows = trials",))
    check_labels(groups, "group", "z-scoring group labels")
    _, inverse = np.unique(groups.astype(str), return_inverse=True)
    out = np.zeros(betas.shape, dtype=np.float32)
    for group in range(int(inverse.max()) + 1 if len(inverse) else 0):  # every row is in exactly one group
        rows = inverse == group
        block = np.asarray(betas[rows], dtype=np.float64)
        mean = block.mean(axis=0)
        sd = block.std(axis=0)
        out[rows] = np.where(sd > 0, (block - mean) / np.where(sd > 0, sd, 1.0), 0.0)
    return out
