"""Least-squares separate (Mumford et al. 2012): one GLM per trial, that trial against all the others."""

from __future__ import annotations

import numpy as np


def lss_betas(design: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Least-squares-separate betas ``(n_trials, n_voxels)``, float32: one GLM per trial, vectorised.

    Parameters
    ----------
    design : ndarray, shape (n_volumes, n_trials)
        Residualised single-trial regressors.
    data : ndarray, shape (n_volumes, n_voxels)
    """
    total = design.sum(axis=1)
    xy = design.T.astype(np.float32) @ data  # (n, V)
    ty = total.astype(np.float32) @ data  # (V,)
    xx = (design**2).sum(axis=0)  # (n,)
    xt = design.T @ total  # (n,)
    tt = total @ total
    # per trial: regressors a = x_i, b = total - x_i
    ab = xt - xx
    bb = tt - 2 * xt + xx
    det = xx * bb - ab**2
    by = ty[None, :] - xy
    beta = (bb[:, None] * xy - ab[:, None] * by) / np.where(np.abs(det) > 1e-12, det, np.inf)[:, None]
    return beta.astype(np.float32)
