"""Leave-one-run-out cross-validation of the time series (GLMdenoise's rule): how well a model fitted on the other
runs predicts each held-out run's data, for 0, 1, ... noise components.

No stimulus repeats are needed. The model shared across runs is one on/off regressor for all trials, with the
voxel's HRF: it predicts the mean response, which single-trial designs share across runs whether or not their
stimuli repeat. (A regressor per repeated stimulus, tried first, predicted held-out runs worse than nothing wherever
repeats vary more than they repeat: the curve could not guide.) With ``k``
components, they are projected out of every run's data and design (training and held-out alike, as GLMdenoise
projects the held-out run's nuisance out of its data and of the prediction): components that carry shared noise
raise the held-out R², components that carry task signal lower it (the prediction loses what the data lose), and
components without either leave it unchanged in expectation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_recon.glm.estimators.stages.design import SessionModel
from bids_recon.glm.estimators.stages.ols import solve_normal

#: A voxel is predicted when its held-out R² reaches this at some count (GLMdenoise scores only such voxels). Below
#: it, the held-out R² of single-trial designs whose on/off regressor is nearly flat (a trial every few seconds)
#: moves with the shared noise itself, and every voxel moves together: the curve would decide by noise.
PREDICTED_R2 = 0.05
#: Fewest predicted voxels for the curve to guide the choice.
MIN_PREDICTED_VOXELS = 20


@dataclass
class HeldOutCurve:
    """Held-out R² of the scored voxels for each number of noise components.

    Attributes
    ----------
    r2 : ndarray, shape (n_counts, n_voxels)
        ``1 - sum_runs SSE / sum_runs SS`` of each held-out run's data, nuisance and components projected out.
    predicted : ndarray of bool, shape (n_voxels,)
        Voxels whose held-out R² reaches :data:`PREDICTED_R2` at some count.
    """

    r2: np.ndarray
    predicted: np.ndarray

    @property
    def informative(self) -> bool:
        """Whether enough voxels are predicted at all (:data:`MIN_PREDICTED_VOXELS`) for the curve to guide."""
        return int(self.predicted.sum()) >= MIN_PREDICTED_VOXELS

    def gains(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean over the predicted voxels of each count's R² gain over 0 components, and its standard error
        (``sd / sqrt(n)``): two ``(n_counts,)`` arrays.

        The mean, not the median: shared noise loads on few voxels strongly and on most weakly (its loadings are
        skewed), so the typical voxel gains little from a component that helps the voxels it loads on a lot, while
        it loses a little to every component; the median gain then stays below 0 where removing the component
        improves most voxels' betas (seen on simulations with known betas)."""
        if not self.predicted.any():
            return np.zeros(len(self.r2)), np.zeros(len(self.r2))
        diff = self.r2[:, self.predicted] - self.r2[0, self.predicted]
        return diff.mean(axis=1), diff.std(axis=1) / np.sqrt(diff.shape[1])

    def medians(self) -> np.ndarray:
        """Median held-out R² of the predicted voxels per count: ``(n_counts,)`` (the curve the report draws)."""
        if not self.predicted.any():
            return np.median(self.r2, axis=1)
        return np.median(self.r2[:, self.predicted], axis=1)


def heldout_curve(model: SessionModel, hrf_index: np.ndarray, components: list[np.ndarray], counts: list[int],
                  voxels: np.ndarray) -> HeldOutCurve:
    """Leave-one-run-out R² of each held-out run's time series with the first ``k`` components, ``k`` in ``counts``.

    Parameters
    ----------
    model : SessionModel
        Runs residualised by the nuisance basis, designs likewise (at least two runs).
    hrf_index : ndarray of int, shape (n_voxels,)
        Each voxel's HRF (the shared model's regressors use it).
    components : list of ndarray, each (n_volumes, n_max)
        Per run: orthonormal, nested noise components orthogonal to the nuisance basis.
    counts : list of int
    voxels : ndarray of int
        The voxels scored.

    Notes
    -----
    Everything comes from small per-run products (Frisch-Waugh, as
    :func:`~bids_recon.glm.estimators.stages.ols.betas_per_count`): with ``X`` a run's on/off regressor, ``P`` its
    components and ``y`` its data, the projected normal equations are ``X'X - B_k B_k'`` and ``X'y - B_k D_k``
    (``B = X'P``, ``D = P'y``), the projected data's sum of squares ``y'y - |D_k|²``, and a held-out run's squared
    error for training betas ``b`` is ``SS - 2 b'h + b'Gb`` with its own ``G`` and ``h``.
    """
    runs, designs = model.runs, model.designs
    n_runs, n_counts = len(runs), len(counts)
    sse = np.zeros((n_counts, len(voxels)))
    sst = np.zeros((n_counts, len(voxels)))
    groups = [(k, np.flatnonzero(hrf_index[voxels] == k)) for k in np.unique(hrf_index[voxels])]
    ys = [run.data[:, voxels] for run in runs]
    d = [(p.T.astype(np.float32) @ y).astype(np.float64) for p, y in zip(components, ys, strict=True)]
    yy = [(y.astype(np.float64) ** 2).sum(axis=0) for y in ys]
    for i, count in enumerate(counts):
        for r in range(n_runs):
            sst[i] += yy[r] - (d[r][:count] ** 2).sum(axis=0)
    for k, cols in groups:
        xs = [x[k].sum(axis=1, keepdims=True) for x in designs]  # (n_volumes, 1): the on/off regressor
        xtx = [x.T @ x for x in xs]
        b = [x.T @ p.astype(np.float64) for x, p in zip(xs, components, strict=True)]
        xty = [(x.T.astype(np.float32) @ y[:, cols]).astype(np.float64) for x, y in zip(xs, ys, strict=True)]
        for i, count in enumerate(counts):
            g = [xtx[r] - b[r][:, :count] @ b[r][:, :count].T for r in range(n_runs)]
            h = [xty[r] - b[r][:, :count] @ d[r][:count][:, cols] for r in range(n_runs)]
            g_all, h_all = sum(g), sum(h)
            for r in range(n_runs):
                beta = solve_normal(g_all - g[r], h_all - h[r])
                sse[i, cols] += (yy[r][cols] - (d[r][:count][:, cols] ** 2).sum(axis=0)
                                 - 2 * (beta * h[r]).sum(axis=0) + (beta * (g[r] @ beta)).sum(axis=0))
    r2 = 1.0 - sse / np.where(sst > 0, sst, np.inf)
    return HeldOutCurve(r2, (r2 >= PREDICTED_R2).any(axis=0))


def heldout_r2(model: SessionModel, hrf_index: np.ndarray) -> np.ndarray:
    """Every voxel's held-out R² of the on/off model without noise components: ``(n_voxels,)`` (NaN with one run).

    Voxels at or below 0 are those the task does not predict: GLMdenoise's noise pool."""
    if len(model.runs) < 2:
        return np.full(model.n_voxels, np.nan)
    none = [np.zeros((run.n_volumes, 0)) for run in model.runs]
    return heldout_curve(model, hrf_index, none, [0], np.arange(model.n_voxels)).r2[0]
