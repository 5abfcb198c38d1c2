"""Single-trial estimators: LSA, LSS, and the GLMsingle-class ``fithrf-denoise-rr``.

``fithrf-denoise-rr`` follows the method of GLMsingle (Prince et al. 2022) that produced NSD's betas
(``betas_fithrf_GLMdenoise_RR``), rewritten to vectorise across voxels:

0. **nuisance**: a constant, polynomial drift of degree round(run minutes / 2) (GLMsingle's; the cosine
   high-pass of earlier versions is ``drift_model="cosine"``) and the confounds are projected out of the data
   and of every trial regressor;
1. **fithrf**: every voxel gets the HRF of a library (:mod:`bids_recon.glm.hrf`, GLMsingle's NSD-derived
   library by default) whose single-trial model explains the most of its variance (one QR per run and HRF,
   not per voxel);
2. **denoise**: principal components of the time series of a noise pool (bright voxels whose single-trial
   model explains little) are added as nuisance regressors, one count for the session, and the HRFs are chosen
   again on the denoised data. The count is chosen by
   leave-one-run-out cross-validation of repeated stimuli as GLMsingle does (the betas of the training runs
   with ``k`` components predict the *unregularised, 0-component* betas of the same stimulus in the held-out
   run, in units z-scored by the latter; GLMsingle's 5 % stopping rule) when that cross-validation is
   informative (the betas of repeated trials correlate more than those of different stimuli), and otherwise by
   a sequential parallel analysis of the noise pool (components whose eigenvalues exceed those of the same voxels
   with the stronger components removed and their phases randomised);
3. **rr**: ridge regression per voxel with the ridge parameter that maximises the voxel's marginal likelihood
   (empirical Bayes: trial amplitudes drawn around 0 with one variance, white noise with another; one SVD per
   run and HRF group, all voxels at once). It needs no repeated stimuli and, unlike a fraction chosen by
   predicting repeats, stays right when single-trial responses vary more than they repeat. GLMsingle's choice,
   a fraction of the least-squares norm (1.0-0.05) chosen by cross-validation, per voxel or for the session,
   is ``fraction_selection="voxel"`` / ``"session"``. The ridge betas are rescaled per voxel to the
   least-squares betas' scale (least squares with offset, as GLMsingle), so they stay in percent signal change.

Every estimator works on one session at a time: runs arrive as ``(n_volumes, n_voxels)`` float32 arrays in
percent signal change, already restricted to the brain mask. What was chosen, the cross-validation curves and
plain-language warnings (also logged to ``logging.getLogger("bids_recon.glm")``) are in ``SessionFit.info``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bids_recon.errors import UsageError
from bids_recon.glm.hrf import HrfLibrary, canonical_library, default_library, trial_regressors
from bids_recon.glm.params import DRIFT_MODELS, ESTIMATORS, FRACTION_SELECTIONS, NOISE_SELECTIONS, GlmParams

LOGGER = logging.getLogger("bids_recon.glm")

#: Fractions of the OLS norm tried by the cross-validated fractional ridge (and shown in the CV curve).
DEFAULT_FRACTIONS = tuple(np.round(np.linspace(1.0, 0.05, 20), 4))
#: GLMsingle's stopping rule: the smallest count whose CV gain is within 5 % of the best.
PCSTOP = 1.05
#: Fewest trials with a repeat in another run for the cross-validation to be run at all.
MIN_CV_TRIALS = 10
#: Below this many cross-validated trials the CV curves are flagged as noisy.
FEW_CV_TRIALS = 30
#: Repeats count as predicting each other when their betas' median correlation exceeds that of shuffled pairs by
#: this many standard deviations.
RELIABILITY_Z = 3.0


@dataclass
class SessionRun:
    """One run of a session, ready for estimation.

    Attributes
    ----------
    data : ndarray, shape (n_volumes, n_voxels), float32
        Percent signal change inside the brain mask (modified in place by the estimators).
    onsets, durations : ndarray, shape (n_trials,)
        Seconds.
    stim_ids : ndarray of str, shape (n_trials,)
        Stimulus of each trial (repeats drive the cross-validation).
    repetition_time : float
    confounds : ndarray, shape (n_volumes, n_confounds), optional
    mean_intensity : ndarray, shape (n_voxels,), optional
        Mean raw signal per voxel (for the noise pool's brightness criterion).
    """

    data: np.ndarray
    onsets: np.ndarray
    durations: np.ndarray
    stim_ids: np.ndarray
    repetition_time: float
    confounds: np.ndarray | None = None
    mean_intensity: np.ndarray | None = None

    @property
    def n_volumes(self) -> int:
        return int(self.data.shape[0])

    @property
    def frame_times(self) -> np.ndarray:
        return np.arange(self.n_volumes) * self.repetition_time


@dataclass
class SessionFit:
    """Single-trial betas of a session and the choices that made them.

    Attributes
    ----------
    betas : list of ndarray, each (n_trials_run, n_voxels), float32
        Percent signal change, one array per run.
    hrf_index : ndarray of int, shape (n_voxels,)
        Library index of each voxel's HRF (0 for single-HRF estimators).
    r2 : ndarray, shape (n_voxels,)
        Variance explained (fraction) by the single-trial model with the chosen HRF, after the nuisance and noise
        components are projected out.
    onoff_r2 : ndarray, shape (n_voxels,)
        Variance explained by one regressor for all trials (task responsiveness).
    fractions : ndarray, shape (n_voxels,)
        Norm of the ridge betas as a fraction of the least-squares betas' norm (1.0: no regularisation).
    n_noise_components : int
    cv_noise : list of float
        Median cross-validated R² (see :class:`RepeatCV`) over the task voxels for 0, 1, ... noise components
        (empty if not run).
    cv_fractions : list of float
        The same for each of ``info["Fractions"]`` (empty if not run).
    info : dict
        What was run, chosen and why (JSON-serialisable); ``info["Warnings"]`` lists plain-language warnings.
    """

    betas: list[np.ndarray]
    hrf_index: np.ndarray
    r2: np.ndarray
    onoff_r2: np.ndarray
    fractions: np.ndarray
    n_noise_components: int = 0
    cv_noise: list[float] = field(default_factory=list)
    cv_fractions: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# building blocks


def cosine_drift(n_volumes: int, repetition_time: float, high_pass_hz: float) -> np.ndarray:
    """Discrete cosine basis (nilearn's ``cosine`` drift model without the constant): ``(n_volumes, order)``."""
    order = min(n_volumes - 1, int(np.floor(2 * n_volumes * high_pass_hz * repetition_time)))
    n = np.arange(n_volumes)
    k = np.arange(1, order + 1)
    return np.sqrt(2.0 / n_volumes) * np.cos(np.pi / n_volumes * (n[:, None] + 0.5) * k[None, :])


def drift_degree(n_volumes: int, repetition_time: float) -> int:
    """GLMsingle's drift degree: run minutes / 2, rounded half up."""
    return int(np.floor(n_volumes * repetition_time / 60.0 / 2.0 + 0.5))


def polynomial_drift(n_volumes: int, degree: int) -> np.ndarray:
    """Legendre polynomials of degrees 1..``degree`` over the run, unit norm: ``(n_volumes, degree)``."""
    x = np.linspace(-1.0, 1.0, n_volumes)
    columns = [np.polynomial.legendre.Legendre.basis(d)(x) for d in range(1, degree + 1)]
    if not columns:
        return np.zeros((n_volumes, 0))
    out = np.column_stack(columns)
    return out / np.linalg.norm(out, axis=0)


def drift_regressors(n_volumes: int, repetition_time: float, high_pass_hz: float = 0.01,
                     drift_model: str = "polynomial", degree: int | None = None) -> np.ndarray:
    """Drift regressors without the constant: ``(n_volumes, n_drift)``.

    ``"polynomial"``: Legendre polynomials up to ``degree`` (default :func:`drift_degree`, GLMsingle's);
    ``"cosine"``: a discrete cosine basis with cut-off ``high_pass_hz``.
    """
    if drift_model == "polynomial":
        return polynomial_drift(n_volumes, drift_degree(n_volumes, repetition_time) if degree is None else degree)
    if drift_model == "cosine":
        return cosine_drift(n_volumes, repetition_time, high_pass_hz)
    raise ValueError(f"drift_model must be one of {DRIFT_MODELS}, got {drift_model!r}")


def orthonormal(matrix: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Orthonormal basis of the column space of ``matrix`` ``(n, k)`` (rank-revealing SVD)."""
    if matrix.size == 0:
        return np.zeros((matrix.shape[0], 0))
    u, s, _ = np.linalg.svd(matrix, full_matrices=False)
    return u[:, s > tol * s.max()]


def nuisance_basis(run: SessionRun, high_pass_hz: float, drift_model: str = "polynomial",
                   degree: int | None = None) -> np.ndarray:
    """Orthonormal basis of constant, drift and (standardised) confounds: ``(n_volumes, m)``.

    Parameters
    ----------
    drift_model, degree
        See :func:`drift_regressors`.
    """
    drift = drift_regressors(run.n_volumes, run.repetition_time, high_pass_hz, drift_model, degree)
    parts = [np.ones((run.n_volumes, 1)), drift]
    if run.confounds is not None and run.confounds.size:
        c = np.asarray(run.confounds, dtype=float)
        c = c - c.mean(axis=0)
        sd = c.std(axis=0)
        parts.append(c[:, sd > 0] / sd[sd > 0])
    return orthonormal(np.concatenate(parts, axis=1))


def residualise(matrix: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Remove the span of orthonormal ``basis`` from the columns of ``matrix`` (in place for float32 data)."""
    if basis.shape[1] == 0:
        return matrix
    b = basis.astype(matrix.dtype, copy=False)
    matrix -= b @ (b.T @ matrix)
    return matrix


def _design_qr(design: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(design)
    return q


def _ols_betas(design: np.ndarray, data: np.ndarray) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------------------------
# cross-validation over repeated stimuli


@dataclass
class RepeatCV:
    """Leave-one-run-out cross-validation of repeated stimuli, as GLMsingle's ``calcbadness``.

    Every ordered pair of trials of one stimulus in different runs is a (target, predictor) pair: the
    *reference* (unregularised) beta of the target trial is predicted by a candidate's beta of the other
    trial. Betas are z-scored per voxel with the reference betas' session mean and sd, so that every candidate
    is judged on the same scale against the same, fixed target. (Scoring each candidate's betas against its own
    betas, as earlier versions did, rewards nothing real: with single-trial amplitudes that vary from trial to
    trial that R² sits near -1 whatever the candidate.)
    """

    test: np.ndarray  # (n_pairs,) stacked trial index of the target
    train: np.ndarray  # (n_pairs,) stacked trial index of the predictor (same stimulus, another run)
    n_trials: int

    @classmethod
    def build(cls, stim_ids: list[np.ndarray]) -> RepeatCV:
        run_of = np.concatenate([np.full(len(s), r) for r, s in enumerate(stim_ids)])
        stims = np.concatenate([np.asarray(s).astype(str) for s in stim_ids])
        _, inverse = np.unique(stims, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        test, train = [], []
        for group in np.split(order, bounds):
            if len(group) < 2:
                continue
            a, b = np.meshgrid(group, group, indexing="ij")
            keep = run_of[a] != run_of[b]
            test.append(a[keep])
            train.append(b[keep])
        if not test:
            return cls(np.zeros(0, dtype=int), np.zeros(0, dtype=int), len(stims))
        return cls(np.concatenate(test), np.concatenate(train), len(stims))

    def __len__(self) -> int:
        """Number of trials with a repeat in another run."""
        return int(len(np.unique(self.test)))

    def scores(self, reference: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray:
        """Cross-validated R² per voxel of each candidate: ``(n_candidates, n_voxels)``.

        ``R² = 1 - sum (z_candidate[train] - z_reference[test])² / sum z_reference[test]²``: 0 for a candidate that
        predicts the session mean, higher when repeats predict each other.

        Parameters
        ----------
        reference : ndarray, shape (n_trials, n_voxels)
            Unregularised betas (the targets and the z-scoring).
        candidates : list of ndarray, each (n_trials, n_voxels)
        """
        mean = reference.mean(axis=0)
        sd = reference.std(axis=0, ddof=1) if len(reference) > 1 else np.ones(reference.shape[1])
        sd = np.where(sd > 0, sd, 1.0).astype(np.float32)
        target = (reference[self.test] - mean) / sd
        total = (target**2).sum(axis=0)
        out = np.empty((len(candidates), reference.shape[1]), dtype=np.float64)
        for i, candidate in enumerate(candidates):
            error = ((candidate[self.train] - mean) / sd - target) ** 2
            out[i] = 1.0 - error.sum(axis=0) / np.where(total > 0, total, np.inf)
        return out


    def reliability(self, betas: np.ndarray, rng: np.random.Generator, n_shuffles: int = 20
                    ) -> tuple[float, float, float]:
        """Do repeats predict each other? Median over voxels of the correlation between the betas of the pairs.

        Returns the observed median correlation and the mean and sd of the same statistic with the predictors
        shuffled across pairs (pairs of different stimuli), ``n_shuffles`` times.
        """
        z = betas - betas.mean(axis=0)
        z = z / np.where(z.std(axis=0) > 0, z.std(axis=0), 1.0)

        def median_r(train: np.ndarray) -> float:
            a, b = z[self.test], z[train]
            a = a - a.mean(axis=0)
            b = b - b.mean(axis=0)
            denom = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
            return float(np.median(np.where(denom > 0, (a * b).sum(axis=0) / np.where(denom > 0, denom, 1.0), 0.0)))

        null = [median_r(rng.permutation(self.train)) for _ in range(n_shuffles)]
        return median_r(self.train), float(np.mean(null)), float(np.std(null))


def _pcstop(curve: np.ndarray, pcstop: float = PCSTOP) -> int:
    """GLMsingle's ``select_noise_regressors``: first count whose gain over 0 is within ``pcstop`` of the best."""
    gains = np.asarray(curve) - curve[0]
    best, chosen = -np.inf, 0
    for count, gain in enumerate(gains):
        if gain > best:
            chosen, best = count, gain
            if best * pcstop >= gains.max():
                break
    return chosen


# ----------------------------------------------------------------------------------------------------------
# fractional ridge, vectorised over voxels


class FractionalRidge:
    """Fractional ridge (Rokem & Kay 2020) for one design and many voxels, from one SVD.

    For each voxel and target fraction ``f`` of the OLS coefficient norm, the ridge parameter is found by
    interpolating the (monotone) norm curve on a log grid of alphas, all voxels at once.
    """

    def __init__(self, design: np.ndarray, data: np.ndarray, n_alphas: int = 100) -> None:
        u, s, vt = np.linalg.svd(design, full_matrices=False)
        keep = s > 1e-10 * s.max()
        self.s, self.vt = s[keep], vt[keep].astype(np.float32)
        rotated = u[:, keep].T.astype(np.float32) @ data  # (k, V)
        self.coef = rotated / self.s[:, None].astype(np.float32)  # OLS coefficients in the rotated basis
        s2 = self.s**2
        self.log_alphas = np.linspace(np.log(s2.min()) - 9.0, np.log(s2.max()) + 9.0, n_alphas)
        shrink2 = (s2[None, :] / (s2[None, :] + np.exp(self.log_alphas)[:, None])) ** 2  # (A, k)
        c2 = self.coef.astype(np.float64) ** 2
        total = c2.sum(axis=0)
        # (A, V), decreasing in alpha; float32 halves the largest array the ridge stage keeps per run
        self.curve = np.sqrt(shrink2 @ c2 / np.where(total > 0, total, 1.0)).astype(np.float32)

    def betas(self, fraction: float | np.ndarray, columns: np.ndarray | slice | None = None) -> np.ndarray:
        """Ridge betas ``(n_trials, n_voxels)`` at ``fraction`` (scalar or per voxel) of the OLS norm.

        With ``columns`` (indices or a slice of this solver's voxels), only those voxels, and ``fraction`` is
        per chosen voxel or scalar.
        """
        coef, curve = (self.coef, self.curve) if columns is None else (self.coef[:, columns], self.curve[:, columns])
        fraction = np.broadcast_to(np.asarray(fraction, dtype=float), (curve.shape[1],))
        if np.all(fraction >= 1.0):
            return (self.vt.T @ coef).astype(np.float32)
        above = (curve >= fraction[None, :]).sum(axis=0)  # grid points whose norm is still >= f
        hi = np.clip(above, 1, len(self.log_alphas) - 1)
        lo = hi - 1
        cols = np.arange(curve.shape[1])
        f_lo, f_hi = curve[lo, cols], curve[hi, cols]
        t = np.where(f_lo > f_hi, (f_lo - fraction) / np.where(f_lo > f_hi, f_lo - f_hi, 1.0), 0.0)
        log_alpha = self.log_alphas[lo] + np.clip(t, 0, 1) * (self.log_alphas[hi] - self.log_alphas[lo])
        alpha = np.where(fraction >= 1.0, 0.0, np.exp(log_alpha))
        s2 = self.s[:, None] ** 2
        shrink = (s2 / (s2 + alpha[None, :])).astype(np.float32)
        return (self.vt.T @ (shrink * coef)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# the stages


def _session_designs(runs: list[SessionRun], library: HrfLibrary, bases: list[np.ndarray]) -> list[np.ndarray]:
    """Residualised trial designs per run: ``(n_hrfs, n_volumes, n_trials)``."""
    designs = []
    for run, basis in zip(runs, bases, strict=True):
        x = trial_regressors(library, run.onsets, run.durations, run.frame_times)
        for k in range(len(library)):
            x[k] = x[k] - basis @ (basis.T @ x[k])
        designs.append(x)
    return designs


def _onoff_r2(runs: list[SessionRun], designs: list[np.ndarray], hrf: int = 0) -> np.ndarray:
    explained = np.zeros(runs[0].data.shape[1])
    total = np.zeros_like(explained)
    for run, x in zip(runs, designs, strict=True):
        onoff = x[hrf].sum(axis=1, keepdims=True)
        q = onoff / max(np.linalg.norm(onoff), 1e-12)
        explained += (q.T.astype(np.float32) @ run.data)[0].astype(np.float64) ** 2
        total += (run.data.astype(np.float64) ** 2).sum(axis=0)
    return explained / np.where(total > 0, total, 1.0)


def _select_hrf(runs: list[SessionRun], designs: list[np.ndarray], how: str = "singletrial",
                voxels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel (of ``voxels``, default all), the HRF whose model explains the most variance; and that R².

    ``how="singletrial"`` fits one regressor per trial (GLMsingle's choice); ``"onoff"`` fits one
    regressor for all trials.
    """
    n_hrfs = designs[0].shape[0]
    n_out = runs[0].data.shape[1] if voxels is None else len(voxels)
    explained = np.zeros((n_hrfs, n_out))
    total = np.zeros(n_out)
    for run, x in zip(runs, designs, strict=True):
        data = run.data if voxels is None else run.data[:, voxels]
        total += (data.astype(np.float64) ** 2).sum(axis=0)
        for k in range(n_hrfs):
            design = x[k] if how == "singletrial" else x[k].sum(axis=1, keepdims=True)
            q = _design_qr(design).astype(np.float32)
            explained[k] += ((q.T @ data) ** 2).sum(axis=0)
    r2 = explained / np.where(total > 0, total, 1.0)
    best = np.argmax(r2, axis=0)
    return best, r2[best, np.arange(r2.shape[1])]


def _chosen_r2(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray) -> np.ndarray:
    """Variance explained by the single-trial model with each voxel's chosen HRF: ``(n_voxels,)``."""
    explained = np.zeros(runs[0].data.shape[1])
    total = np.zeros_like(explained)
    for run, x in zip(runs, designs, strict=True):
        total += (run.data.astype(np.float64) ** 2).sum(axis=0)
        for k in np.unique(hrf_index):
            cols = np.flatnonzero(hrf_index == k)
            q = _design_qr(x[k]).astype(np.float32)
            explained[cols] += ((q.T @ run.data[:, cols]) ** 2).sum(axis=0)
    return explained / np.where(total > 0, total, 1.0)


def _grouped_betas(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray,
                   extra: list[np.ndarray] | None = None, voxels: np.ndarray | None = None) -> np.ndarray:
    """Stacked OLS betas ``(n_trials, n_selected_voxels)`` with each voxel's HRF and extra nuisance."""
    voxels = np.arange(runs[0].data.shape[1]) if voxels is None else voxels
    blocks = []
    for r, (run, x) in enumerate(zip(runs, designs, strict=True)):
        out = np.zeros((len(run.onsets), len(voxels)), dtype=np.float32)
        data = run.data[:, voxels]
        if extra is not None and extra[r].shape[1]:
            data = residualise(data.copy(), extra[r])
        for k in np.unique(hrf_index[voxels]):
            cols = np.flatnonzero(hrf_index[voxels] == k)
            design = x[k] if extra is None or not extra[r].shape[1] else x[k] - extra[r] @ (extra[r].T @ x[k])
            out[:, cols] = _ols_betas(design, data[:, cols])
        blocks.append(out)
    return np.concatenate(blocks)




def _betas_per_count(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray,
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
                out[i][starts[r]:starts[r + 1], cols] = _solve_normal(lhs, rhs)
    return out


#: Eigenvalues of normal equations below this fraction of the largest are directions the data cannot estimate.
NORMAL_RCOND = 1e-10


def _solve_normal(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve symmetric positive semi-definite normal equations ``lhs @ b = rhs``.

    Directions whose eigenvalue is below :data:`NORMAL_RCOND` of the largest (a trial regressor inside the span of
    the noise components: not estimable) get no weight, instead of the huge one a plain solve gives them.
    """
    values, vectors = np.linalg.eigh(lhs)
    keep = values > NORMAL_RCOND * max(float(values[-1]), 0.0)
    kept = vectors[:, keep]
    return kept @ ((kept.T @ rhs) / values[keep, None])


@dataclass
class NoiseComponents:
    """Candidate noise regressors of a session and the parallel analysis of the noise pool."""

    components: list[np.ndarray]  # per run (n_volumes, n_max): leading left singular vectors of the pool
    parallel_counts: list[int]  # per run: components above the phase-randomised null
    spectrum: list[float]  # first run: share of the pool's variance per component
    null_spectrum: list[float]  # first run: the same for the phase-randomised pool (largest of the draws)

    @property
    def parallel_count(self) -> int:
        """Median count over runs (rounded up: a surplus component costs a degree of freedom per run, a missing
        one leaves shared noise in every voxel)."""
        return int(np.ceil(np.median(self.parallel_counts))) if self.parallel_counts else 0


#: A component counts when its eigenvalue exceeds the null's by this factor. The phase-randomised null of
#: autocorrelated, drift-projected series sits below the data even where nothing is shared: by up to 6 % at the
#: first rank and up to 15 % at later ranks (the deflated pool is no longer stationary) on the simulation sweep,
#: where injected components stood 28 % or more above it. On our own simulator, components at 13-22 % were
#: stimulus-driven signal shared by weakly responsive pool voxels, and removing them cost accuracy (0.55 -> 0.47).
PARALLEL_RATIO = 1.25
#: Noise-pool voxels the parallel analysis tests (a random subset when the pool is larger: its cost is the phase
#: randomisation of each of them).
PARALLEL_VOXELS = 2000


def _phase_randomised(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each column of ``z`` ``(n_volumes, n)`` with its Fourier phases drawn at random (power spectrum kept)."""
    spectra = np.fft.rfft(z, axis=0)
    angle = rng.random(spectra.shape, dtype=np.float32) * np.float32(2 * np.pi)
    phase = np.empty(spectra.shape, dtype=np.complex64)
    phase.real, phase.imag = np.cos(angle), np.sin(angle)
    phase[0] = 1.0
    if z.shape[0] % 2 == 0:
        phase[-1] = 1.0
    return np.fft.irfft(spectra * phase, n=z.shape[0], axis=0).astype(np.float32)


def _top_eigenvalue(z: np.ndarray) -> float:
    """Largest eigenvalue of ``z @ z.T``."""
    from scipy.linalg import eigh

    gram = (z @ z.T).astype(np.float64)
    return float(eigh(gram, eigvals_only=True, subset_by_index=[len(gram) - 1, len(gram) - 1])[0])


def _unit_columns(z: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(z, axis=0)
    return z[:, norm > 0] / norm[norm > 0]


def _noise_components(runs: list[SessionRun], pool: np.ndarray, bases: list[np.ndarray], n_max: int,
                      rng: np.random.Generator, n_draws: int = 2) -> NoiseComponents:
    """Principal time courses of the noise pool per run, and how many stand above chance (parallel analysis).

    Each pool voxel's residual time series is scaled to unit norm (as GLMsingle does) and the eigenvectors of
    their ``(n_volumes, n_volumes)`` Gram matrix are the components. The parallel analysis is sequential:
    component ``i`` counts when its eigenvalue exceeds, by :data:`PARALLEL_RATIO`, the largest eigenvalue of the
    pool with the ``i`` stronger components projected out and each voxel's Fourier phases randomised (the largest
    of up to ``n_draws`` draws, more than one only where the first leaves the decision within 25 %; the
    randomisation keeps each voxel's power spectrum and destroys what voxels share). The classic test,
    every rank against the null of the whole pool, undercounts: strong shared components inflate that null for
    the weaker ones (it found 5 of 7 injected components, 6 of 10).
    """
    components, counts, spectrum, null_spectrum = [], [], [], []
    for r, (run, basis) in enumerate(zip(runs, bases, strict=True)):
        z = _unit_columns(run.data[:, pool].astype(np.float32))
        if z.shape[1] < 2:  # no pool: no component (the eigenvectors of a zero matrix would be arbitrary volumes)
            components.append(np.zeros((run.n_volumes, 0)))
            counts.append(0)
            continue
        values, vectors = np.linalg.eigh((z @ z.T).astype(np.float64))
        values, vectors = values[::-1], vectors[:, ::-1]
        components.append(vectors[:, :min(n_max, z.shape[1])])  # beyond the pool's rank: arbitrary directions
        if z.shape[1] > PARALLEL_VOXELS:  # the test runs on a random subset of the pool
            z = z[:, np.sort(rng.choice(z.shape[1], PARALLEL_VOXELS, replace=False))]
            values, vectors = np.linalg.eigh((z @ z.T).astype(np.float64))
            values, vectors = values[::-1], vectors[:, ::-1]
        leading = vectors[:, :n_max].astype(np.float32)
        count, nulls = 0, []
        for i in range(min(n_max, len(values) - 1)):
            left = z - leading[:, :i] @ (leading[:, :i].T @ z) if i else z
            null = _top_eigenvalue(residualise(_phase_randomised(left, rng), basis))
            for _ in range(n_draws - 1):  # more draws only where one draw leaves the decision close
                if null <= 0 or not 0.8 < values[i] / (PARALLEL_RATIO * null) < 1.25:
                    break
                null = max(null, _top_eigenvalue(residualise(_phase_randomised(left, rng), basis)))
            nulls.append(null)
            if values[i] <= PARALLEL_RATIO * null:
                break
            count = i + 1
        counts.append(count)
        if r == 0:
            total = max(float(values.sum()), 1e-12)
            spectrum = [round(float(v / total), 5) for v in values[:n_max + 1]]
            null_spectrum = [round(float(v / total), 5) for v in nulls]
    return NoiseComponents(components, counts, spectrum, null_spectrum)


# ----------------------------------------------------------------------------------------------------------
# ridge by marginal likelihood


#: Range of the ridge parameters tried by the evidence maximisation, relative to the median squared singular value
#: of the session's designs (extended down to 1e-3 of the smallest, so that the fraction bound can be met), and the
#: grid's step in log lambda.
EVIDENCE_RANGE = (1e-5, 1e3)
EVIDENCE_STEP = float(np.log(1.5))


def _evidence_ridge(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray,
                    n_nuisance: list[int], task: np.ndarray | None = None, min_fraction: float = 0.05
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Ridge betas with each voxel's ridge parameter at its maximum marginal likelihood.

    Per voxel, ``y = X a + e`` with ``a ~ N(0, s² I)`` and ``e ~ N(0, σ² I)`` in the ``n_volumes - n_nuisance``
    dimensions left after the nuisance projection; with ``X = U S V'`` the rotated data ``z = U'y`` have
    variances ``σ² (1 + S² / λ)``, ``λ = σ² / s²``, and the rest of the residual space variance ``σ²``. For each
    ``λ`` of a grid, ``σ²`` has a closed form per run, and the profile log-likelihood summed over runs is an
    ``(n_lambdas, n_voxels)`` matrix product; the best grid point is refined by a parabola in log ``λ``. The
    ridge never shrinks a voxel's betas below ``min_fraction`` of their least-squares norm.

    Returns
    -------
    betas : ndarray, shape (n_trials, n_voxels), float32
        Ridge betas rescaled per voxel to the least-squares betas (scale and offset; scale > 0).
    lam : ndarray, shape (n_voxels,)
    fraction : ndarray, shape (n_voxels,)
        Norm of the ridge betas over the least-squares norm.
    task_ols : ndarray, shape (n_trials, len(task)) or None
        Least-squares betas of the ``task`` voxels (for the cross-validation diagnostics).
    """
    n_voxels = runs[0].data.shape[1]
    n_trials = [len(r.onsets) for r in runs]
    starts = np.concatenate([[0], np.cumsum(n_trials)])
    groups = [(k, np.flatnonzero(hrf_index == k)) for k in np.unique(hrf_index)]
    solved = []  # per run: list of (cols, s, vt, z)
    s2_all = []
    for run, x in zip(runs, designs, strict=True):
        per_group = []
        for k, cols in groups:
            # the SVD from the small Gram matrix: X'X = V S² V', and U'y = S^-1 V' X'y
            s2, v = np.linalg.eigh(x[k].T @ x[k])
            keep = s2 > 1e-12 * s2.max()
            s, vt = np.sqrt(s2[keep]), v[:, keep].T
            rotate = (vt / s[:, None]).astype(np.float32)
            per_group.append((cols, s, vt.astype(np.float32),
                              rotate @ (x[k].T.astype(np.float32) @ run.data[:, cols])))
            s2_all.append(s**2)
        solved.append(per_group)
    s2_all = np.concatenate(s2_all)
    low, high = min(EVIDENCE_RANGE[0] * np.median(s2_all), 1e-3 * s2_all.min()), EVIDENCE_RANGE[1] * np.median(s2_all)
    lambdas = np.exp(np.arange(np.log(low), np.log(high) + EVIDENCE_STEP, EVIDENCE_STEP))
    loglik = np.zeros((len(lambdas), n_voxels))
    norm2 = np.zeros((len(lambdas), n_voxels))  # squared norm of the ridge coefficients at each grid point
    ols_norm2 = np.zeros(n_voxels)
    for run, per_group, dims in zip(runs, solved, n_nuisance, strict=True):
        n_dims = run.n_volumes - dims
        for cols, s, _, z in per_group:
            y2 = np.einsum("ij,ij->j", run.data[:, cols], run.data[:, cols], dtype=np.float64)
            z2 = z.astype(np.float64) ** 2
            residual = np.maximum(y2 - z2.sum(axis=0), 1e-12 * np.maximum(y2, 1e-30))
            g = 1.0 + s[None, :] ** 2 / lambdas[:, None]  # (A, k)
            sigma2 = ((1.0 / g) @ z2 + residual[None, :]) / max(n_dims, 1)
            loglik[:, cols] += -0.5 * np.log(g).sum(axis=1)[:, None] - 0.5 * n_dims * np.log(sigma2)
            norm2[:, cols] += ((1.0 - 1.0 / g) ** 2 / s[None, :] ** 2) @ z2  # shrink² coef², coef = z / s
            ols_norm2[cols] += (z2 / s[:, None] ** 2).sum(axis=0)
    best = np.argmax(loglik, axis=0)
    inner = np.clip(best, 1, len(lambdas) - 2)
    cols_all = np.arange(n_voxels)
    left, mid, right = loglik[inner - 1, cols_all], loglik[inner, cols_all], loglik[inner + 1, cols_all]
    curvature = left - 2 * mid + right
    shift = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1.0), 0.0)
    step = np.log(lambdas[1] / lambdas[0])
    log_lam = np.log(lambdas[inner]) + np.clip(shift, -1, 1) * step
    log_lam = np.where((best == 0) | (best == len(lambdas) - 1), np.log(lambdas[best]), log_lam)
    # never shrink below min_fraction of the least-squares norm (GLMsingle's smallest fraction): the largest
    # ridge parameter allowed is where the norm curve crosses it (interpolated in log lambda)
    ratio = np.sqrt(norm2 / np.where(ols_norm2 > 0, ols_norm2, 1.0))  # (A, V), decreasing in lambda
    target = 1.03 * min_fraction  # the linear interpolation below errs by ~1 %
    above = (ratio >= target).sum(axis=0)
    hi = np.clip(above, 1, len(lambdas) - 1)
    r_lo, r_hi = ratio[hi - 1, cols_all], ratio[hi, cols_all]
    t = np.clip(np.where(r_lo > r_hi, (r_lo - target) / np.where(r_lo > r_hi, r_lo - r_hi, 1.0), 0.0), 0, 1)
    log_cap = np.log(lambdas[hi - 1]) + t * step
    log_lam = np.where(above < len(lambdas), np.minimum(log_lam, log_cap), log_lam)
    lam = np.exp(log_lam)

    # NaN until filled by the HRF groups (they partition the voxels): a gap would be caught as non-finite betas
    betas = np.full((starts[-1], n_voxels), np.nan, dtype=np.float32)
    task_ols = None if task is None else np.full((starts[-1], len(task)), np.nan, dtype=np.float32)
    task_position = None if task is None else np.full(n_voxels, -1)
    if task is not None:
        task_position[task] = np.arange(len(task))
    moments = np.zeros((5, n_voxels))  # sums of ridge, ols, ridge², ridge*ols, and norms ridge² / ols²
    norms = np.zeros((2, n_voxels))
    for r, per_group in enumerate(solved):
        rows = slice(starts[r], starts[r + 1])
        for cols, s, vt, z in per_group:
            coef = z / s[:, None].astype(np.float32)
            shrink = (s[:, None] ** 2 / (s[:, None] ** 2 + lam[cols][None, :])).astype(np.float32)
            ridge = vt.T @ (shrink * coef)
            ols = vt.T @ coef
            betas[rows, cols] = ridge
            if task is not None:
                inside = task_position[cols] >= 0
                task_ols[rows, task_position[cols[inside]]] = ols[:, inside]
            moments[0, cols] += ridge.sum(axis=0)
            moments[1, cols] += ols.sum(axis=0)
            moments[2, cols] += (ridge.astype(np.float64) ** 2).sum(axis=0)
            moments[3, cols] += (ridge.astype(np.float64) * ols).sum(axis=0)
            norms[0, cols] += ((shrink * coef).astype(np.float64) ** 2).sum(axis=0)
            norms[1, cols] += (coef.astype(np.float64) ** 2).sum(axis=0)
    n = starts[-1]
    mean_ridge, mean_ols = moments[0] / n, moments[1] / n
    var_ridge = moments[2] - n * mean_ridge**2
    cov = moments[3] - n * mean_ridge * mean_ols
    scale = np.where(var_ridge > 0, cov / np.where(var_ridge > 0, var_ridge, 1.0), 1.0)
    offset = mean_ols - scale * mean_ridge
    bad = scale <= 0  # GLMsingle keeps the ridge betas as they are when the fit would flip them
    scale, offset = np.where(bad, 1.0, scale), np.where(bad, 0.0, offset)
    betas *= scale.astype(np.float32)[None, :]
    betas += offset.astype(np.float32)[None, :]
    fraction = np.sqrt(norms[0] / np.where(norms[1] > 0, norms[1], 1.0))
    return betas, lam, np.where(norms[1] > 0, fraction, 1.0).astype(np.float32), task_ols


# ----------------------------------------------------------------------------------------------------------
# the estimator


def _histogram(values: np.ndarray, n_bins: int) -> list[int]:
    return [int(c) for c in np.bincount(np.asarray(values, dtype=int), minlength=n_bins)[:n_bins]]


def _warn(warnings: list[str], message: str) -> None:
    warnings.append(message)
    LOGGER.warning(message)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def fit_session(
    runs: list[SessionRun],
    estimator: str = GlmParams.estimator,
    high_pass_hz: float = GlmParams.high_pass_hz,
    library: HrfLibrary | None = None,
    max_noise_components: int = GlmParams.max_noise_components,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    noise_pool_max: int = 4000,
    min_cv_gain: float = 0.005,
    seed: int = 0,
    hrf_selection: str = "singletrial",
    fraction_selection: str = GlmParams.fraction_selection,
    *,
    drift_model: str = GlmParams.drift_model,
    polynomial_degree: int | None = None,
    noise_selection: str = GlmParams.noise_selection,
    task_voxels_max: int = 2000,
    reselect_hrf: bool = True,
) -> SessionFit:
    """Estimate single-trial betas for the runs of one session.

    Parameters
    ----------
    runs : list of SessionRun
        Their ``data`` are residualised in place (float32, no copies of the whole session are made).
    estimator : str
        One of :data:`ESTIMATORS`.
    high_pass_hz : float
        Cut-off of the cosine drift basis (``drift_model="cosine"`` only).
    library : HrfLibrary, optional
        HRF library of the ``fithrf`` estimators (default: :func:`~bids_recon.glm.hrf.default_library`,
        GLMsingle's).
    max_noise_components : int
        Largest number of noise components tried.
    fractions : tuple of float
        Ridge fractions of the cross-validated selections and of the diagnostic CV curve (1.0 must be first).
    noise_pool_max : int
        Noise-pool voxels used for the components (a seeded random subset when more qualify).
    min_cv_gain : float
        With the cross-validated count, a median CV R² gain below which no noise components are used.
    seed : int
        Seed of the noise-pool and task-voxel subsets and of the parallel analysis.
    hrf_selection : {"singletrial", "onoff"}
        Model whose variance explained picks each voxel's HRF (see :func:`_select_hrf`).
    fraction_selection : {"evidence", "session", "voxel"}
        ``"evidence"`` (default): per voxel, the ridge parameter of maximum marginal likelihood (needs no repeats).
        ``"session"``: one fraction for the session, the best median CV R² over the task voxels; ``"voxel"``:
        GLMsingle's best fraction per voxel. Both cross-validated choices fall back to ``"evidence"`` (with a
        warning) when the session has too few repeats across runs or its repeats do not predict each other.
    drift_model : {"polynomial", "cosine"}
        Nuisance drift (see :func:`nuisance_basis`); polynomial by default, as GLMsingle.
    polynomial_degree : int, optional
        Degree of the polynomial drift (default: run minutes / 2, rounded).
    noise_selection : {"auto", "cv", "parallel"}
        How many noise components: ``"cv"`` is GLMsingle's cross-validation and stopping rule; ``"parallel"``
        the parallel analysis of the noise pool; ``"auto"`` (default) the cross-validation when it is
        informative (repeats of a stimulus in other runs, whose betas correlate more than those of different
        stimuli: :meth:`RepeatCV.reliability`) and the parallel analysis otherwise.
    task_voxels_max : int
        Task-responsive voxels (highest single-trial R²) whose betas the cross-validation scores.
    reselect_hrf : bool
        With denoising, choose each voxel's HRF once the noise components are projected out (until then, the task
        voxels and the noise pool come from the single-trial R² with the library's mid HRF, and only the task
        voxels get their HRF, for the cross-validation); ``False`` chooses all HRFs first, as GLMsingle. On the
        independent simulation family this raised the correlation of the chosen with the true HRFs by up to 0.3
        and the accuracy of the betas by up to 0.04.

    Returns
    -------
    SessionFit
    """
    _check_choice("estimator", estimator, ESTIMATORS)
    _check_choice("fraction_selection", fraction_selection, FRACTION_SELECTIONS)
    _check_choice("noise_selection", noise_selection, NOISE_SELECTIONS)
    _check_choice("drift_model", drift_model, DRIFT_MODELS)
    _check_choice("hrf_selection", hrf_selection, ("singletrial", "onoff"))
    fit_hrf = estimator.startswith("fithrf")
    denoise = "denoise" in estimator
    ridge = estimator.endswith("-rr")
    library = (library or default_library()) if fit_hrf else canonical_library()
    n_voxels = runs[0].data.shape[1]
    rng = np.random.default_rng(seed)
    warnings: list[str] = []
    info: dict[str, Any] = {"Estimator": estimator, "DriftModel": drift_model, "HRFLibrary": library.name,
                            "HRFLibrarySize": len(library), "Warnings": warnings}
    if drift_model == "cosine":
        info["HighPassHz"] = high_pass_hz
    else:
        info["PolynomialDegree"] = [drift_degree(r.n_volumes, r.repetition_time) if polynomial_degree is None
                                    else polynomial_degree for r in runs]

    bases = [nuisance_basis(run, high_pass_hz, drift_model, polynomial_degree) for run in runs]
    for run, basis in zip(runs, bases, strict=True):
        residualise(run.data, basis)
    designs = _session_designs(runs, library, bases)
    canonical = int(np.argmin(np.abs(library.time_to_peak - 5.0)))
    onoff = _onoff_r2(runs, designs, canonical)

    if estimator == "lss":
        betas = [_lss_betas(x[0], run.data) for run, x in zip(runs, designs, strict=True)]
        r2 = _select_hrf(runs, designs)[1]
        return SessionFit(betas, np.zeros(n_voxels, np.int16), r2.astype(np.float32), onoff.astype(np.float32),
                          np.ones(n_voxels, np.float32), info=info)
    # with denoising, the HRFs are chosen once the noise components are out: until then the task voxels and the
    # noise pool come from the single-trial R² with the library's mid HRF, and only the task voxels get theirs
    screen = fit_hrf and denoise and reselect_hrf
    if fit_hrf and not screen:
        hrf_index, r2 = _select_hrf(runs, designs, hrf_selection)
        if hrf_selection != "singletrial":
            r2 = _chosen_r2(runs, designs, hrf_index)
    elif screen:
        r2 = _select_hrf(runs, [x[canonical:canonical + 1] for x in designs])[1]
        hrf_index = np.full(n_voxels, canonical)
    else:
        hrf_index, r2 = np.zeros(n_voxels, dtype=int), _select_hrf(runs, designs)[1]

    # task voxels (scored by the cross-validation) and their HRF choices
    task = np.flatnonzero(r2 >= np.percentile(r2, 90))
    if len(task) > task_voxels_max:
        task = np.sort(rng.choice(task, task_voxels_max, replace=False))
    cv = RepeatCV.build([run.stim_ids for run in runs])
    info["CrossValidatedTrials"] = len(cv)
    can_cv = len(cv) >= MIN_CV_TRIALS
    if screen and can_cv:  # the task voxels' HRFs, for the cross-validation before denoising
        hrf_index[task] = _select_hrf(runs, designs, hrf_selection, task)[0]
    if (denoise or ridge) and not can_cv:
        message = (f"only {len(cv)} trials have a repeat of their stimulus in another run of this session, too few "
                   "to cross-validate")
        message += (": the number of noise components comes from parallel analysis of the noise pool"
                    if denoise else "")
        message += ("; the ridge parameters from each voxel's marginal likelihood" if ridge else "") + "."
        info["CrossValidation"] = message
        _warn(warnings, message)
    elif (denoise or ridge) and len(cv) < FEW_CV_TRIALS:
        _warn(warnings, f"only {len(cv)} trials have a repeat in another run: the cross-validation curves are noisy.")
    reliable = False
    if (denoise or ridge) and can_cv:
        reference = _betas_per_count(runs, designs, hrf_index, None, [0], task)[0]
        observed, null_mean, null_sd = cv.reliability(reference, rng)
        reliable = observed > null_mean + RELIABILITY_Z * null_sd and observed > 0
        info["RepeatReliability"] = {"MedianCorrelation": round(observed, 4), "ShuffledMean": round(null_mean, 4),
                                     "ShuffledSD": round(null_sd, 4)}
        if not reliable:
            instead = []
            if denoise and noise_selection != "cv":
                instead.append("the number of noise components comes from parallel analysis of the noise pool")
            if ridge:
                instead.append("the ridge from each voxel's marginal likelihood")
            _warn(warnings, "repeats of a stimulus do not predict each other in this session (median correlation of "
                            f"repeated trials' betas {observed:.3f}; pairs of different stimuli {null_mean:.3f} ± "
                            f"{null_sd:.3f}): single-trial responses vary more than they repeat, or the signal is "
                            "weak, so the cross-validation curves cannot guide the choices"
                            + (": " + " and ".join(instead) + ", which need no repeats." if instead else "."))

    n_components, cv_noise, extra = 0, [], None
    if denoise:
        mean_intensity = (np.mean([r.mean_intensity for r in runs], axis=0) if runs[0].mean_intensity is not None
                          else np.ones(n_voxels))
        finite = np.isfinite(mean_intensity) & (mean_intensity > 0)
        bright = finite & (mean_intensity >= 0.5 * np.percentile(mean_intensity[finite], 99)) if finite.any() \
            else np.zeros(n_voxels, bool)
        pool = np.flatnonzero(bright & (r2 <= np.median(r2)))
        if len(pool) > noise_pool_max:
            pool = np.sort(rng.choice(pool, noise_pool_max, replace=False))
        noise = _noise_components(runs, pool, bases, max_noise_components, rng)
        # nested orthonormal components, orthogonal to the nuisance basis: the first k of them are "k components"
        nested = [np.linalg.qr(c - b @ (b.T @ c))[0] if c.shape[1] else c
                  for c, b in zip(noise.components, bases, strict=True)]
        info.update({"NoisePoolVoxels": int(len(pool)), "TaskVoxelsForCV": int(len(task)),
                     "NoiseComponentsParallelAnalysis": noise.parallel_count,
                     "NoiseParallelAnalysisPerRun": noise.parallel_counts,
                     "NoisePoolSpectrum": noise.spectrum, "NoisePoolNullSpectrum": noise.null_spectrum})
        if can_cv:
            per_count = _betas_per_count(runs, designs, hrf_index, nested, list(range(max_noise_components + 1)),
                                         task)
            scores = cv.scores(per_count[0], per_count)
            cv_noise = [float(np.nanmedian(s)) for s in scores]
            info["CVNoiseComponents"] = cv_noise
        if (noise_selection == "cv" and can_cv) or (noise_selection == "auto" and reliable):
            n_components = _pcstop(np.asarray(cv_noise))
            if cv_noise[n_components] - cv_noise[0] < min_cv_gain:
                n_components = 0
            info["NoiseSelection"] = "cross-validation"
        else:
            n_components = noise.parallel_count
            info["NoiseSelection"] = "parallel analysis"
        if n_components >= max_noise_components and max_noise_components > 0:
            _warn(warnings, f"the largest number of noise components tried ({max_noise_components}) was chosen: more "
                            "shared noise may remain.")
        extra = [c[:, :n_components] for c in nested]
        if n_components:
            for run, basis in zip(runs, extra, strict=True):
                residualise(run.data, basis)
            # the designs lose the same span as the data
            designs = [x - b[None] @ (b.T[None] @ x) for x, b in zip(designs, extra, strict=True)]
        if screen:  # shared noise no longer sways the choice
            hrf_index, r2 = _select_hrf(runs, designs, hrf_selection)
            if hrf_selection != "singletrial":
                r2 = _chosen_r2(runs, designs, hrf_index)
    info["NoiseComponents"] = n_components
    if fit_hrf:
        info["HRFTimeToPeak"] = [round(float(t), 2) for t in library.time_to_peak]
        info["HRFIndexHistogram"] = _histogram(hrf_index, len(library))
        info["HRFIndexHistogramTaskVoxels"] = _histogram(hrf_index[task], len(library))
        at_ends = float(np.mean((hrf_index[task] == 0) | (hrf_index[task] == len(library) - 1)))
        if len(library) > 4 and at_ends > 0.5:
            _warn(warnings, f"{at_ends:.0%} of the task-responsive voxels chose the first or the last HRF of the "
                            "library: their HRFs may lie outside it, or the single-trial fits are too noisy to tell "
                            "HRFs apart.")

    n_nuisance = [b.shape[1] + (0 if extra is None else extra[r].shape[1]) for r, b in enumerate(bases)]
    cv_fractions: list[float] = []
    fraction_map = np.ones(n_voxels, dtype=np.float32)
    if ridge:
        selection = fraction_selection if can_cv and reliable else "evidence"  # (the warning above says so)
        info["FractionSelection"] = {"evidence": "marginal likelihood per voxel", "session": "cross-validation, "
                                     "one for the session", "voxel": "cross-validation per voxel"}[selection]
        if selection == "evidence":
            stacked, lam, fraction_map, task_ols = _evidence_ridge(runs, designs, hrf_index, n_nuisance,
                                                                   task if can_cv else None, min(fractions))
            info["RidgeLambdaMedian"] = float(np.median(lam[task])) if len(task) else float(np.median(lam))
            if can_cv:
                cv_fractions, chosen_score = _fraction_curve(runs, designs, hrf_index, cv, fractions, task,
                                                             task_ols, stacked[:, task])
                info["CVChosenRidge"] = chosen_score
            betas = np.split(stacked, np.cumsum([len(r.onsets) for r in runs])[:-1])
        else:
            betas, fraction_map, cv_fractions = _ridge_session(runs, designs, hrf_index, cv, fractions, task,
                                                               selection)
        if cv_fractions:
            info["CVFractions"] = cv_fractions
            if reliable and max(cv_fractions) <= 0:
                chosen = ("each voxel's ridge parameter came from its marginal likelihood" if selection == "evidence"
                          else f"the fraction{'s' if selection == 'voxel' else ''} with the best score "
                          f"{'were' if selection == 'voxel' else 'was'} kept")
                _warn(warnings, f"the cross-validated R² of repeated trials is <= 0 for every ridge fraction (best "
                                f"{max(cv_fractions):.3f}): repeats agree more than chance, but too little for a "
                                "single trial's betas to predict a repeat better than the session mean, so the curve "
                                f"only ranks the fractions; {chosen}.")
        info["FractionMedianTaskVoxels"] = float(np.median(fraction_map[task])) if len(task) else 1.0
        info["FractionHistogramTaskVoxels"] = np.histogram(fraction_map[task], bins=np.linspace(0, 1, 11))[0].tolist()
    else:
        stacked = _grouped_betas(runs, designs, hrf_index)
        betas = np.split(stacked, np.cumsum([len(r.onsets) for r in runs])[:-1])
    info["Fractions"] = [float(f) for f in fractions] if ridge else [1.0]
    return SessionFit(
        betas=[np.ascontiguousarray(b, dtype=np.float32) for b in betas],
        hrf_index=hrf_index.astype(np.int16), r2=r2.astype(np.float32), onoff_r2=onoff.astype(np.float32),
        fractions=fraction_map, n_noise_components=n_components, cv_noise=cv_noise, cv_fractions=cv_fractions,
        info=info,
    )


def _fraction_curve(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray, cv: RepeatCV,
                    fractions: tuple[float, ...], task: np.ndarray, task_ols: np.ndarray, chosen: np.ndarray
                    ) -> tuple[list[float], float]:
    """Median CV R² over the task voxels at each fixed fraction, and that of the ``chosen`` betas."""
    solvers = []
    for run, x in zip(runs, designs, strict=True):
        per_group = []
        for k in np.unique(hrf_index[task]):
            cols = np.flatnonzero(hrf_index[task] == k)
            per_group.append((cols, FractionalRidge(x[k], run.data[:, task[cols]])))
        solvers.append(per_group)
    starts = np.concatenate([[0], np.cumsum([len(r.onsets) for r in runs])])
    candidates = []
    for fraction in fractions:
        out = np.full((starts[-1], len(task)), np.nan, dtype=np.float32)  # NaN until filled by the groups
        for r, per_group in enumerate(solvers):
            for cols, solver in per_group:
                out[starts[r]:starts[r + 1], cols] = solver.betas(fraction)
        candidates.append(out)
    scores = cv.scores(task_ols, [*candidates, chosen])
    medians = [float(np.nanmedian(s)) for s in scores]
    return medians[:-1], medians[-1]


#: Bytes of float32 betas (all the session's trials x a block of voxels) the ridge stage works on at once.
RIDGE_BLOCK_BYTES = 16 * 2**20


def _ridge_session(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray, cv: RepeatCV,
                   fractions: tuple[float, ...], task: np.ndarray, selection: str = "session",
                   block_bytes: int = RIDGE_BLOCK_BYTES) -> tuple[list[np.ndarray], np.ndarray, list[float]]:
    """Ridge fraction chosen by cross-validation (per session or per voxel); betas rescaled to the OLS scale.

    Betas at each fraction are computed a block of voxels at a time, so memory holds the output and one block's
    work arrays, not several whole-session copies. Returns the betas per run, the fraction per voxel and the
    median CV R² over the task voxels per fraction.
    """
    n_voxels = runs[0].data.shape[1]
    solvers = []  # per run: list of (columns, FractionalRidge)
    for run, x in zip(runs, designs, strict=True):
        per_group = []
        for k in np.unique(hrf_index):
            cols = np.flatnonzero(hrf_index == k)
            per_group.append((cols, FractionalRidge(x[k], run.data[:, cols])))
        solvers.append(per_group)
    n_trials = [len(r.onsets) for r in runs]
    starts = np.concatenate([[0], np.cumsum(n_trials)])
    step = max(1, block_bytes // (4 * int(starts[-1])))

    def blocks(size: int) -> list[np.ndarray]:
        return [np.arange(a, min(a + size, n_voxels)) for a in range(0, n_voxels, size)]

    def stacked_at(fraction: float | np.ndarray, voxels: np.ndarray) -> np.ndarray:
        """Betas ``(n_trials, len(voxels))`` of all trials at ``fraction`` for the (sorted) ``voxels``."""
        per_voxel = np.broadcast_to(np.asarray(fraction, dtype=float), (n_voxels,))
        out = np.full((starts[-1], len(voxels)), np.nan, dtype=np.float32)  # NaN until filled by the groups
        contiguous = voxels[-1] - voxels[0] + 1 == len(voxels)
        for r, per_group in enumerate(solvers):
            for cols, solver in per_group:
                if contiguous:  # a block: this group's voxels in it are a slice of its columns (no copies)
                    lo, hi = np.searchsorted(cols, [voxels[0], voxels[-1] + 1])
                    inside, where = slice(lo, hi), cols[lo:hi] - voxels[0]
                else:
                    position = np.minimum(np.searchsorted(voxels, cols), len(voxels) - 1)
                    inside = np.flatnonzero(voxels[position] == cols)  # this group's voxels among the chosen
                    where = position[inside]
                if len(where):
                    out[starts[r]:starts[r + 1], where] = solver.betas(per_voxel[cols[inside]], inside)
        return out

    task_ols = stacked_at(1.0, task)
    curve = [float(np.nanmedian(s)) for s in
             cv.scores(task_ols, [stacked_at(fraction, task) for fraction in fractions])]
    if selection == "voxel":  # GLMsingle's choice: the best fraction of each voxel
        chosen = np.ones(n_voxels, dtype=np.float32)
        for voxels in blocks(4 * step):  # larger blocks: 20 fractions per block, fewer small solver calls
            ols = stacked_at(1.0, voxels)
            scores = cv.scores(ols, [ols] + [stacked_at(f, voxels) for f in fractions[1:]])
            scores = np.where(np.isfinite(scores), scores, -np.inf)
            chosen[voxels] = np.asarray(fractions, dtype=np.float32)[np.argmax(scores, axis=0)]
    else:  # one fraction for the session: the best median over the task-responsive voxels
        chosen = np.full(n_voxels, fractions[int(np.nanargmax(curve))], dtype=np.float32)
    betas = np.full((starts[-1], n_voxels), np.nan, dtype=np.float32)  # every block of voxels fills its columns
    for voxels in blocks(step):
        ols, ridge = stacked_at(1.0, voxels), stacked_at(chosen, voxels)
        # rescale each voxel's ridge betas to the OLS betas (least squares with offset), keeping units
        rc = ridge - ridge.mean(axis=0)
        oc = ols - ols.mean(axis=0)
        denom = (rc**2).sum(axis=0)
        scale = np.where(denom > 0, (rc * oc).sum(axis=0) / np.where(denom > 0, denom, 1.0), 1.0)
        scale = np.where(scale > 0, scale, 1.0)
        betas[:, voxels] = rc * scale + ols.mean(axis=0)
    return np.split(betas, starts[1:-1]), chosen, curve


def _lss_betas(design: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Least-squares-separate betas: one GLM per trial (that trial vs all others), vectorised.

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
