"""Least-squares trial betas with each voxel's HRF: the unregularised fit (and the reference of the
cross-validation)."""

from __future__ import annotations

import numpy as np

from bids_recon.glm.estimators.session import SessionRun
from bids_recon.glm.estimators.stages.design import SessionModel

#: Eigenvalues of normal equations below this fraction of the largest are directions the data cannot estimate.
NORMAL_RCOND = 1e-10


def ols_betas(design: np.ndarray, data: np.ndarray) -> np.ndarray:
    """OLS trial betas ``(n_trials, n_voxels)`` for a residualised design ``(T, n_trials)``.

    The design's pseudo-inverse comes from its QR decomposition (R^-1 Q^T), several times faster than
    ``np.linalg.pinv``'s SVD for these small designs; a rank-deficient design falls back to the SVD.
    """
    from scipy.linalg import solve_triangular

    q, r = np.linalg.qr(design)
    diagonal = np.abs(np.diag(r))
    if diagonal.size and diagonal.min() > 1e-8 * diagonal.max():
        pseudo_inverse = solve_triangular(r, q.T)
    else:
        pseudo_inverse = np.linalg.pinv(design)
    return (pseudo_inverse.astype(np.float32) @ data).astype(np.float32)


def grouped_betas(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray,
                  voxels: np.ndarray | None = None) -> np.ndarray:
    """Stacked OLS betas ``(n_trials, n_selected_voxels)`` with each voxel's HRF."""
    voxels = np.arange(runs[0].data.shape[1]) if voxels is None else voxels
    blocks = []
    for run, x in zip(runs, designs, strict=True):
        out = np.zeros((len(run.onsets), len(voxels)), dtype=np.float32)
        data = run.data[:, voxels]
        for k in np.unique(hrf_index[voxels]):
            cols = np.flatnonzero(hrf_index[voxels] == k)
            out[:, cols] = ols_betas(x[k], data[:, cols])
        blocks.append(out)
    return np.concatenate(blocks)


def least_squares(model: SessionModel, hrf_index: np.ndarray) -> list[np.ndarray]:
    """The betas of each run ``(n_trials_run, n_voxels)`` by least squares with each voxel's HRF (no ridge: the
    fit's info records the one fraction, 1.0)."""
    betas = model.split(grouped_betas(model.runs, model.designs, hrf_index))
    model.info["Fractions"] = [1.0]
    return betas


def betas_per_count(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray,
                    components: list[np.ndarray] | None, counts: list[int], voxels: np.ndarray) -> list[np.ndarray]:
    """Stacked OLS betas ``(n_trials, len(voxels))`` with the first k noise components, for each k in ``counts``.

    ``components`` are per run ``(n_volumes, n_max)`` with orthonormal, nested columns, orthogonal to the nuisance
    basis. By Frisch-Waugh, projecting out the first ``k`` of them changes the normal equations to
    ``(X'X - B_k B_k') b = X'y - B_k D_k`` with ``B = X'P`` and ``D = P'y``: one small solve per count, run and HRF
    group instead of a QR of each projected design.
    """
    starts = np.concatenate([[0], np.cumsum([len(r.onsets) for r in runs])])
    # NaN until filled: the HRF groups partition the voxels; a gap would be caught as non-finite betas
    out = [np.full((starts[-1], len(voxels)), np.nan, dtype=np.float32) for _ in counts]
    groups = [(k, np.flatnonzero(hrf_index[voxels] == k)) for k in np.unique(hrf_index[voxels])]
    for r, (run, x) in enumerate(zip(runs, designs, strict=True)):
        y = run.data[:, voxels]
        q = components[r] if components is not None else np.zeros((run.n_volumes, 0))
        d = (q.T.astype(np.float32) @ y).astype(np.float64)
        q64 = q.astype(np.float64)
        for k, cols in groups:
            xk = x[k].astype(np.float64)  # X'X - B B' cancels: float32 left it indefinite (betas of 1e24)
            xtx, b = xk.T @ xk, xk.T @ q64
            xty = (x[k].T.astype(np.float32) @ y[:, cols]).astype(np.float64)
            for i, count in enumerate(counts):
                lhs = xtx - b[:, :count] @ b[:, :count].T
                rhs = xty - b[:, :count] @ d[:count][:, cols]
                out[i][starts[r]:starts[r + 1], cols] = solve_normal(lhs, rhs)
    return out


def solve_normal(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve symmetric positive semi-definite normal equations ``lhs @ b = rhs``.

    Directions whose eigenvalue is below :data:`NORMAL_RCOND` of the largest (a trial regressor inside the span of
    the noise components: not estimable) get no weight, instead of the huge one a plain solve gives them.
    """
    values, vectors = np.linalg.eigh(lhs)
    keep = values > NORMAL_RCOND * max(float(values[-1]), 0.0)
    kept = vectors[:, keep]
    return kept @ ((kept.T @ rhs) / values[keep, None])
