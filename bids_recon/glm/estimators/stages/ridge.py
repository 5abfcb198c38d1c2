"""Ridge regression per voxel, vectorised over voxels: by marginal likelihood, or by a cross-validated fraction.

``"evidence"`` (default): the ridge parameter that maximises each voxel's marginal likelihood (empirical Bayes: trial
amplitudes drawn around 0 with one variance, white noise with another; one SVD per run and HRF group, all voxels at
once). It needs no repeated stimuli and, unlike a fraction chosen by predicting repeats, stays right when
single-trial responses vary more than they repeat. GLMsingle's choice, a fraction of the least-squares norm
(1.0-0.05) chosen by cross-validation, per voxel or for the session, is ``"voxel"`` / ``"session"``. The ridge betas
are rescaled per voxel to the least-squares betas' scale (least squares with offset, as GLMsingle), so they stay in
percent signal change.
"""

from __future__ import annotations

import numpy as np

from bids_recon.glm.estimators.session import GlmSettings, SessionRun, warn
from bids_recon.glm.estimators.stages.crossval import RepeatCV
from bids_recon.glm.estimators.stages.design import SessionModel

#: How the ridge is chosen (``fraction_selection``): marginal likelihood per voxel, or a cross-validated fraction
#: per session / voxel.
FRACTION_SELECTIONS = ("evidence", "session", "voxel")
#: The settings this stage reads.
SETTINGS = ("fraction_selection",)
#: Fractions of the OLS norm tried by the cross-validated fractional ridge (and shown in the CV curve).
DEFAULT_FRACTIONS = tuple(np.round(np.linspace(1.0, 0.05, 20), 4))
#: What the ridge comes from when the cross-validation cannot guide it: too few repeats, repeats that do not repeat
#: (the fit's warnings say so).
WITHOUT_CV = "the ridge parameters from each voxel's marginal likelihood"
IF_UNRELIABLE = "the ridge from each voxel's marginal likelihood"
#: ``info["FractionSelection"]`` of each selection.
SELECTION_TEXT = {"evidence": "marginal likelihood per voxel", "session": "cross-validation, one for the session",
                  "voxel": "cross-validation per voxel"}


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


#: Range of the ridge parameters tried by the evidence maximisation, relative to the median squared singular value
#: of the session's designs (extended down to 1e-3 of the smallest, so that the fraction bound can be met), and the
#: grid's step in log lambda.
EVIDENCE_RANGE = (1e-5, 1e3)
EVIDENCE_STEP = float(np.log(1.5))


def evidence_ridge(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray,
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


def fraction_curve(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray, cv: RepeatCV,
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


def ridge_session(runs: list[SessionRun], designs: list[np.ndarray], hrf_index: np.ndarray, cv: RepeatCV,
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
        ols, shrunk = stacked_at(1.0, voxels), stacked_at(chosen, voxels)
        # rescale each voxel's ridge betas to the OLS betas (least squares with offset), keeping units
        rc = shrunk - shrunk.mean(axis=0)
        oc = ols - ols.mean(axis=0)
        denom = (rc**2).sum(axis=0)
        scale = np.where(denom > 0, (rc * oc).sum(axis=0) / np.where(denom > 0, denom, 1.0), 1.0)
        scale = np.where(scale > 0, scale, 1.0)
        betas[:, voxels] = rc * scale + ols.mean(axis=0)
    return np.split(betas, starts[1:-1]), chosen, curve


def ridge(model: SessionModel, hrf_index: np.ndarray, task: np.ndarray, cv: RepeatCV, reliable: bool,
          selection: str, fractions: tuple[float, ...] = DEFAULT_FRACTIONS
          ) -> tuple[list[np.ndarray], np.ndarray, list[float]]:
    """Ridge betas of each run with each voxel's HRF, rescaled to the least-squares scale.

    Parameters
    ----------
    model : SessionModel
    hrf_index : ndarray, shape (n_voxels,)
    task : ndarray of int
        Voxels scored by the cross-validation.
    cv : RepeatCV
    reliable : bool
        Whether repeats predict each other; the cross-validated selections fall back to ``"evidence"`` without
        reliable repeats (the warnings of :func:`~bids_recon.glm.estimators.stages.crossval.check_repeats` say so).
    selection : {"evidence", "session", "voxel"}
        Marginal likelihood per voxel, or GLMsingle's cross-validated fraction for the session or per voxel.
    fractions : tuple of float
        Fractions of the cross-validated selections and of the diagnostic CV curve (1.0 first).

    Returns
    -------
    betas : list of ndarray, each (n_trials_run, n_voxels), float32
    fraction_map : ndarray, shape (n_voxels,), float32
        Norm of each voxel's ridge betas over its least-squares norm.
    cv_fractions : list of float
        Median CV R² over the task voxels at each fraction (empty without cross-validation).
    """
    info = model.info
    cv_fractions: list[float] = []
    selection = selection if cv.enough and reliable else "evidence"
    info["FractionSelection"] = SELECTION_TEXT[selection]
    if selection == "evidence":
        stacked, lam, fraction_map, task_ols = evidence_ridge(model.runs, model.designs, hrf_index, model.n_nuisance(),
                                                              task if cv.enough else None, min(fractions))
        info["RidgeLambdaMedian"] = float(np.median(lam[task])) if len(task) else float(np.median(lam))
        if cv.enough:
            cv_fractions, chosen_score = fraction_curve(model.runs, model.designs, hrf_index, cv, fractions, task,
                                                        task_ols, stacked[:, task])
            info["CVChosenRidge"] = chosen_score
        betas = model.split(stacked)
    else:
        betas, fraction_map, cv_fractions = ridge_session(model.runs, model.designs, hrf_index, cv, fractions, task,
                                                          selection)
    if cv_fractions:
        info["CVFractions"] = cv_fractions
        if reliable and max(cv_fractions) <= 0:
            chosen = ("each voxel's ridge parameter came from its marginal likelihood" if selection == "evidence"
                      else f"the fraction{'s' if selection == 'voxel' else ''} with the best score "
                      f"{'were' if selection == 'voxel' else 'was'} kept")
            warn(info, f"the cross-validated R² of repeated trials is <= 0 for every ridge fraction (best "
                       f"{max(cv_fractions):.3f}): repeats agree more than chance, but too little for a single trial's "
                       "betas to predict a repeat better than the session mean, so the curve only ranks the "
                       f"fractions; {chosen}.")
    info["FractionMedianTaskVoxels"] = float(np.median(fraction_map[task])) if len(task) else 1.0
    info["FractionHistogramTaskVoxels"] = np.histogram(fraction_map[task], bins=np.linspace(0, 1, 11))[0].tolist()
    info["Fractions"] = [float(f) for f in fractions]
    return betas, fraction_map, cv_fractions


def describe(glm: GlmSettings) -> str:
    """The ridge clause of the methods text."""
    if glm.fraction_selection == "evidence":
        return ("and ridge regression with each voxel's regularisation chosen by maximum marginal likelihood "
                "(MacKay 1992), betas rescaled to the least-squares scale")
    return ("and fractional ridge regression (Rokem & Kay 2020; fraction chosen per "
            f"{glm.fraction_selection} by the same cross-validation, betas rescaled to the least-squares scale)")


def references(glm: GlmSettings) -> tuple[str, ...]:
    """Reference keys of this stage given the settings: MacKay 1992 (evidence) or Rokem & Kay 2020 (fractions)."""
    return ("mackay1992",) if glm.fraction_selection == "evidence" else ("rokem2020",)
