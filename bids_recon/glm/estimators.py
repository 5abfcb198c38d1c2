"""Single-trial estimators: LSA, LSS, and the GLMsingle-class ``fithrf-denoise-rr``.

``fithrf-denoise-rr`` follows the method of GLMsingle (Prince et al. 2022) that produced NSD's betas
(``betas_fithrf_GLMdenoise_RR``), rewritten to vectorise across voxels:

1. **fithrf**: every voxel gets the HRF of a library (:mod:`bids_recon.glm.hrf`) that best fits its time
   series with one regressor per trial (one QR per run and HRF, not per voxel);
2. **denoise**: principal components of the residual time series of a noise pool (bright voxels with
   little task-related variance) are added as nuisance regressors; how many (0-10, one count for the
   session) is chosen by leave-one-run-out cross-validation of the betas of repeated stimuli, and none
   when they do not improve it;
3. **rr**: fractional ridge regression per voxel (fractions 1.0-0.05 of the OLS beta norm), the fraction
   chosen per voxel by the same cross-validation, solved for all voxels of an HRF group at once from
   one SVD per run; the ridge betas are then rescaled per voxel to the OLS betas' scale, so they keep
   their units (percent signal change).

Every estimator works on one session at a time: runs arrive as ``(n_volumes, n_voxels)`` float32
arrays in percent signal change, already restricted to the brain mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bids_recon.errors import UsageError
from bids_recon.glm.hrf import HrfLibrary, canonical_library, default_library, trial_regressors
from bids_recon.glm.params import ESTIMATORS, GlmParams

#: Fractions of the OLS norm tried by the fractional ridge.
DEFAULT_FRACTIONS = tuple(np.round(np.linspace(1.0, 0.05, 20), 4))


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
        Variance explained (fraction) by the single-trial model with the chosen HRF, after nuisance removal.
    onoff_r2 : ndarray, shape (n_voxels,)
        Variance explained by one regressor for all trials (task responsiveness).
    fractions : ndarray, shape (n_voxels,)
        Chosen ridge fraction (1.0: no regularisation).
    n_noise_components : int
    cv_noise : list of float
        Median cross-validated R² of the task voxels for 0, 1, ... noise components (empty if not run).
    info : dict
        What was run and why (e.g. cross-validation not possible).
    """

    betas: list[np.ndarray]
    hrf_index: np.ndarray
    r2: np.ndarray
    onoff_r2: np.ndarray
    fractions: np.ndarray
    n_noise_components: int = 0
    cv_noise: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# building blocks


def cosine_drift(n_volumes: int, repetition_time: float, high_pass_hz: float) -> np.ndarray:
    """Discrete cosine basis (nilearn's ``cosine`` drift model without the constant): ``(n_volumes, order)``."""
    order = min(n_volumes - 1, int(np.floor(2 * n_volumes * high_pass_hz * repetition_time)))
    n = np.arange(n_volumes)
    k = np.arange(1, order + 1)
    return np.sqrt(2.0 / n_volumes) * np.cos(np.pi / n_volumes * (n[:, None] + 0.5) * k[None, :])


def orthonormal(matrix: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Orthonormal basis of the column space of ``matrix`` ``(n, k)`` (rank-revealing SVD)."""
    if matrix.size == 0:
        return np.zeros((matrix.shape[0], 0))
    u, s, _ = np.linalg.svd(matrix, full_matrices=False)
    return u[:, s > tol * s.max()]


def nuisance_basis(run: SessionRun, high_pass_hz: float) -> np.ndarray:
    """Orthonormal basis of constant, cosine drift and (standardised) confounds: ``(n_volumes, m)``."""
    parts = [np.ones((run.n_volumes, 1)), cosine_drift(run.n_volumes, run.repetition_time, high_pass_hz)]
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
    """Leave-one-run-out prediction of each repeated trial by the same stimulus's trials in other runs."""

    rows: np.ndarray  # (n_cv,) indices into the session's stacked trials
    weights: np.ndarray  # (n_cv, n_trials): mean over the same stimulus in other runs
    run_of: np.ndarray  # (n_trials,) run index of each trial

    @classmethod
    def build(cls, stim_ids: list[np.ndarray]) -> RepeatCV:
        run_of = np.concatenate([np.full(len(s), r) for r, s in enumerate(stim_ids)])
        stims = np.concatenate([np.asarray(s).astype(str) for s in stim_ids])
        rows, weights = [], []
        for i, (stim, run) in enumerate(zip(stims, run_of, strict=True)):
            others = np.flatnonzero((stims == stim) & (run_of != run))
            if len(others):
                w = np.zeros(len(stims), dtype=np.float32)
                w[others] = 1.0 / len(others)
                rows.append(i)
                weights.append(w)
        if not rows:
            return cls(np.zeros(0, dtype=int), np.zeros((0, len(stims)), dtype=np.float32), run_of)
        return cls(np.asarray(rows), np.stack(weights), run_of)

    def __len__(self) -> int:
        return len(self.rows)

    def r2(self, betas: np.ndarray) -> np.ndarray:
        """Cross-validated R² per voxel of stacked betas ``(n_trials, n_voxels)``.

        Betas are centred within each run first, so that run-to-run offsets (which the per-session
        z-scoring removes anyway) do not count as unreliability.
        """
        betas = betas.copy()
        for run in np.unique(self.run_of):
            rows = self.run_of == run
            betas[rows] -= betas[rows].mean(axis=0)
        target = betas[self.rows]
        prediction = self.weights @ betas
        centred = target - target.mean(axis=0)
        ss_tot = (centred**2).sum(axis=0)
        ss_err = ((target - prediction) ** 2).sum(axis=0)
        return np.where(ss_tot > 0, 1.0 - ss_err / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)


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
# the estimators


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


def _select_hrf(runs: list[SessionRun], designs: list[np.ndarray], how: str = "singletrial"
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel, the HRF whose model explains the most variance; and that R².

    ``how="singletrial"`` fits one regressor per trial (GLMsingle's choice); ``"onoff"`` fits one
    regressor for all trials, whose shape estimate is far less noisy at single-trial SNRs.
    """
    n_hrfs = designs[0].shape[0]
    explained = np.zeros((n_hrfs, runs[0].data.shape[1]))
    total = np.zeros(runs[0].data.shape[1])
    for run, x in zip(runs, designs, strict=True):
        total += (run.data.astype(np.float64) ** 2).sum(axis=0)
        for k in range(n_hrfs):
            design = x[k] if how == "singletrial" else x[k].sum(axis=1, keepdims=True)
            q = _design_qr(design).astype(np.float32)
            explained[k] += ((q.T @ run.data) ** 2).sum(axis=0)
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


def _noise_components(runs: list[SessionRun], pool: np.ndarray, n_max: int) -> list[np.ndarray]:
    """Top ``n_max`` principal time courses of the noise pool, per run: ``(n_volumes, n_max)``."""
    components = []
    for run in runs:
        z = run.data[:, pool].astype(np.float64)
        sd = z.std(axis=0)
        z = z[:, sd > 0] / sd[sd > 0]
        u, _, _ = np.linalg.svd(z, full_matrices=False)
        components.append(u[:, :n_max])
    return components


def _choose_count(scores: np.ndarray, min_gain: float, z: float = 3.0) -> int:
    """Number of noise components from cross-validated scores ``(n_counts, n_task_voxels)``.

    A count qualifies when its gain over no components, averaged over the task voxels, is larger than
    ``min_gain`` and than ``z`` standard errors of that mean (so that noise in ~30 cross-validated
    trials does not pick components); the smallest count reaching 95% of the best qualifying gain wins.
    """
    scores = np.where(np.isfinite(scores), scores, np.nan)
    gains = scores - scores[0]
    mean = np.nanmean(gains, axis=1)
    n = np.sum(np.isfinite(gains), axis=1)
    se = np.nanstd(gains, axis=1) / np.sqrt(np.maximum(n, 1))
    ok = (mean > min_gain) & (mean > z * se)
    ok[0] = False
    if not ok.any():
        return 0
    best = mean[ok].max()
    return int(np.flatnonzero(ok & (mean >= 0.95 * best))[0])


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
) -> SessionFit:
    """Estimate single-trial betas for the runs of one session.

    Parameters
    ----------
    runs : list of SessionRun
        Their ``data`` are residualised in place (float32, no copies of the whole session are made).
    estimator : str
        One of :data:`ESTIMATORS`.
    high_pass_hz : float
        Cut-off of the cosine drift basis.
    library : HrfLibrary, optional
        HRF library of the ``fithrf`` estimators (default: :func:`default_library`).
    max_noise_components : int
        Largest number of noise components tried.
    fractions : tuple of float
        Ridge fractions tried (1.0 must be first: the OLS solution).
    noise_pool_max : int
        Noise-pool voxels used for the components (a seeded random subset when more qualify).
    min_cv_gain : float
        Median cross-validated R² gain below which noise components are not used.
    seed : int
        Seed of the noise-pool subset.
    hrf_selection : {"singletrial", "onoff"}
        Model whose variance explained picks each voxel's HRF (see :func:`_select_hrf`).
    fraction_selection : {"session", "voxel"}
        One ridge fraction for the session (the best median cross-validated R² over task-responsive
        voxels), or GLMsingle's per-voxel choice. On the simulator's ``small`` preset, per-voxel choices
        from ~30 cross-validated trials were noisy: median r with the true amplitudes 0.469 against 0.49
        for the session-wide choice.

    Returns
    -------
    SessionFit
    """
    if estimator not in ESTIMATORS:
        raise UsageError(f"unknown estimator '{estimator}' (choose from {', '.join(ESTIMATORS)})")
    fit_hrf = estimator.startswith("fithrf")
    denoise = "denoise" in estimator
    ridge = estimator.endswith("-rr")
    library = (library or default_library()) if fit_hrf else canonical_library()
    n_voxels = runs[0].data.shape[1]
    info: dict[str, Any] = {"Estimator": estimator, "HighPassHz": high_pass_hz, "HRFLibrarySize": len(library)}

    bases = [nuisance_basis(run, high_pass_hz) for run in runs]
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
    if fit_hrf:
        hrf_index, _ = _select_hrf(runs, designs, hrf_selection)
        r2 = _chosen_r2(runs, designs, hrf_index)
    else:
        hrf_index, r2 = np.zeros(n_voxels, dtype=int), _select_hrf(runs, designs)[1]

    cv = RepeatCV.build([run.stim_ids for run in runs])
    info["CrossValidatedTrials"] = len(cv)
    can_cv = len(cv) >= 10
    if (denoise or ridge) and not can_cv:
        info["CrossValidation"] = ("not possible: fewer than 10 trials have a repeat in another run of the "
                                   "session; no noise components and no ridge were used")
    n_components, cv_noise, extra = 0, [], None
    if denoise and can_cv:
        rng = np.random.default_rng(seed)
        mean_intensity = np.mean([r.mean_intensity for r in runs], axis=0) if runs[0].mean_intensity is not None \
            else np.ones(n_voxels)
        bright = mean_intensity >= 0.5 * np.percentile(mean_intensity, 99)
        pool = np.flatnonzero(bright & (onoff <= np.percentile(onoff, 50)))
        if len(pool) > noise_pool_max:
            pool = np.sort(rng.choice(pool, noise_pool_max, replace=False))
        task = np.flatnonzero(onoff >= np.percentile(onoff, 90))
        components = _noise_components(runs, pool, max_noise_components)
        bases_k = [[orthonormal(c[:, :k] - b @ (b.T @ c[:, :k])) for c, b in zip(components, bases, strict=True)]
                   for k in range(max_noise_components + 1)]
        per_voxel = []
        for k in range(max_noise_components + 1):
            stacked = _grouped_betas(runs, designs, hrf_index, bases_k[k], task)
            per_voxel.append(cv.r2(stacked))
            cv_noise.append(float(np.nanmedian(per_voxel[-1])))
        n_components = _choose_count(np.stack(per_voxel), min_cv_gain)
        extra = bases_k[n_components]
        info.update({"NoisePoolVoxels": int(len(pool)), "TaskVoxelsForCV": int(len(task)),
                     "CVNoiseComponents": cv_noise})
        if n_components:
            for run, basis in zip(runs, extra, strict=True):
                residualise(run.data, basis)
            # the designs lose the same span as the data
            designs = [x - b[None] @ (b.T[None] @ x) for x, b in zip(designs, extra, strict=True)]
    info["NoiseComponents"] = n_components

    fraction_map = np.ones(n_voxels, dtype=np.float32)
    if ridge and can_cv:
        task = np.flatnonzero(onoff >= np.percentile(onoff, 90))
        betas, fraction_map = _ridge_session(runs, designs, hrf_index, cv, fractions, task, fraction_selection)
    else:
        stacked = _grouped_betas(runs, designs, hrf_index)
        betas = np.split(stacked, np.cumsum([len(r.onsets) for r in runs])[:-1])
    info["Fractions"] = list(fractions) if ridge else [1.0]
    return SessionFit(
        betas=[np.ascontiguousarray(b, dtype=np.float32) for b in betas],
        hrf_index=hrf_index.astype(np.int16), r2=r2.astype(np.float32), onoff_r2=onoff.astype(np.float32),
        fractions=fraction_map, n_noise_components=n_components, cv_noise=cv_noise, info=info,
    )


#: Bytes of float32 betas (all the session's trials x a block of voxels) the ridge stage works on at once.
RIDGE_BLOCK_BYTES = 16 * 2**20


def _ridge_session(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray, cv: RepeatCV,
                   fractions: tuple[float, ...], task: np.ndarray, selection: str = "session",
                   block_bytes: int = RIDGE_BLOCK_BYTES) -> tuple[list[np.ndarray], np.ndarray]:
    """Ridge fraction chosen by cross-validation (per session or per voxel); betas rescaled to the OLS scale.

    Betas at each fraction are computed a block of voxels at a time, so memory holds the output and one block's
    work arrays, not several whole-session copies.
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
        out = np.empty((starts[-1], len(voxels)), dtype=np.float32)
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

    if selection == "voxel":  # GLMsingle's choice: the best fraction of each voxel
        chosen = np.ones(n_voxels, dtype=np.float32)
        for voxels in blocks(4 * step):  # larger blocks: 20 fractions per block, fewer small solver calls
            best_score = cv.r2(stacked_at(1.0, voxels))
            best_score = np.where(np.isfinite(best_score), best_score, -np.inf)
            for fraction in fractions[1:]:
                score = cv.r2(stacked_at(fraction, voxels))
                better = np.isfinite(score) & (score > best_score)
                best_score = np.where(better, score, best_score)
                chosen[voxels[better]] = fraction
    else:  # one fraction for the session: the best median over the task-responsive voxels (their betas only)
        medians = [float(np.nanmedian(cv.r2(stacked_at(fraction, task)))) for fraction in fractions]
        chosen = np.full(n_voxels, fractions[int(np.nanargmax(medians))], dtype=np.float32)
    betas = np.empty((starts[-1], n_voxels), dtype=np.float32)
    for voxels in blocks(step):
        ols, ridge = stacked_at(1.0, voxels), stacked_at(chosen, voxels)
        # rescale each voxel's ridge betas to the OLS betas (least squares with offset), keeping units
        rc = ridge - ridge.mean(axis=0)
        oc = ols - ols.mean(axis=0)
        denom = (rc**2).sum(axis=0)
        scale = np.where(denom > 0, (rc * oc).sum(axis=0) / np.where(denom > 0, denom, 1.0), 1.0)
        betas[:, voxels] = rc * scale + ols.mean(axis=0)
    return np.split(betas, starts[1:-1]), chosen


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
