"""Noise regressors (GLMsingle's GLMdenoise): principal components of a noise pool and how many of them to use.

The noise pool is bright voxels whose single-trial model explains little and (with two runs or more) that the task does
not predict in held-out runs (GLMdenoise's pool); its principal time courses (per run) are candidate nuisance
regressors, one count for the session. By default (``noise_selection="heldout"``) a parallel analysis of the noise pool
proposes a count (components above chance) and the held-out runs' time series check it (GLMdenoise's leave-one-run-out
prediction, :mod:`~bids_recon.glm.estimators.stages.heldout`; no repeats needed): of the counts up to the proposal, the
one that improves the held-out prediction most on average over the voxels the on/off model predicts (held-out R² >=
0.05), kept when that improvement exceeds its standard error, else none. Components that carry task signal make the
held-out prediction worse and are dropped; where the prediction cannot tell (too few voxels predicted), the proposal
stands. The alternatives: leave-one-run-out cross-validation of repeated stimuli as GLMsingle does (``"cv"``: the betas
of the training runs with ``k`` components predict the *unregularised, 0-component* betas of the same stimulus in the
held-out run; GLMsingle's 5 % stopping rule), a sequential parallel analysis of the noise pool (``"parallel"``:
components whose eigenvalues exceed those of the same voxels with the stronger components removed and their phases
randomised), and the earlier default ``"auto"`` (``"cv"`` where repeats predict each other, else ``"parallel"``). On
real BOLD the parallel analysis took the cap in every run and each component it kept cost decoding accuracy: it is no
longer the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_recon.glm.estimators.session import GlmSettings, SessionRun, warn
from bids_recon.glm.estimators.stages.crossval import RepeatCV
from bids_recon.glm.estimators.stages.design import SessionModel, residualise
from bids_recon.glm.estimators.stages.heldout import PREDICTED_R2, heldout_curve
from bids_recon.glm.estimators.stages.ols import betas_per_count

#: How the number of noise components is chosen (``noise_selection``).
NOISE_SELECTIONS = ("heldout", "cv", "parallel", "auto")
#: The settings this stage reads.
SETTINGS = ("max_noise_components", "noise_selection")
#: GLMsingle's stopping rule: the smallest count whose CV gain is within 5 % of the best.
PCSTOP = 1.05
#: Noise-pool voxels used for the components (a seeded random subset when more qualify).
NOISE_POOL_MAX = 4000
#: With the cross-validated count, a median CV R² gain below which no noise components are used.
MIN_CV_GAIN = 0.005
#: What the count comes from when the cross-validation cannot guide it (the fit's warnings say so).
WITHOUT_CV = "the number of noise components comes from parallel analysis of the noise pool"
#: With ``heldout``, the best count is kept when its mean held-out R² gain over 0 components exceeds this many
#: standard errors (over the predicted voxels); otherwise no components are used.
HELDOUT_MIN_GAIN_SE = 1.0


def pcstop(curve: np.ndarray, ratio: float = PCSTOP) -> int:
    """GLMsingle's ``select_noise_regressors``: first count whose gain over 0 is within ``ratio`` of the best."""
    gains = np.asarray(curve) - curve[0]
    best, chosen = -np.inf, 0
    for count, gain in enumerate(gains):
        if gain > best:
            chosen, best = count, gain
            if best * ratio >= gains.max():
                break
    return chosen


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


def phase_randomised(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each column of ``z`` ``(n_volumes, n)`` with its Fourier phases drawn at random (power spectrum kept)."""
    spectra = np.fft.rfft(z, axis=0)
    angle = rng.random(spectra.shape, dtype=np.float32) * np.float32(2 * np.pi)
    phase = np.empty(spectra.shape, dtype=np.complex64)
    phase.real, phase.imag = np.cos(angle), np.sin(angle)
    phase[0] = 1.0
    if z.shape[0] % 2 == 0:
        phase[-1] = 1.0
    return np.fft.irfft(spectra * phase, n=z.shape[0], axis=0).astype(np.float32)


def top_eigenvalue(z: np.ndarray) -> float:
    """Largest eigenvalue of ``z @ z.T``."""
    from scipy.linalg import eigh

    gram = (z @ z.T).astype(np.float64)
    return float(eigh(gram, eigvals_only=True, subset_by_index=[len(gram) - 1, len(gram) - 1])[0])


def unit_columns(z: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(z, axis=0)
    return z[:, norm > 0] / norm[norm > 0]


def noise_components(runs: list[SessionRun], pool: np.ndarray, bases: list[np.ndarray], n_max: int,
                     rng: np.random.Generator, n_draws: int = 2, parallel: bool = True) -> NoiseComponents:
    """Principal time courses of the noise pool per run, and how many stand above chance (parallel analysis).

    Each pool voxel's residual time series is scaled to unit norm (as GLMsingle does) and the eigenvectors of
    their ``(n_volumes, n_volumes)`` Gram matrix are the components. The parallel analysis is sequential:
    component ``i`` counts when its eigenvalue exceeds, by :data:`PARALLEL_RATIO`, the largest eigenvalue of the
    pool with the ``i`` stronger components projected out and each voxel's Fourier phases randomised (the largest
    of up to ``n_draws`` draws, more than one only where the first leaves the decision within 25 %; the
    randomisation keeps each voxel's power spectrum and destroys what voxels share). The classic test,
    every rank against the null of the whole pool, undercounts: strong shared components inflate that null for
    the weaker ones (it found 5 of 7 injected components, 6 of 10). ``parallel=False`` skips the test (its counts
    are then empty).
    """
    components, counts, spectrum, null_spectrum = [], [], [], []
    for r, (run, basis) in enumerate(zip(runs, bases, strict=True)):
        z = unit_columns(run.data[:, pool].astype(np.float32))
        if z.shape[1] < 2:  # no pool: no component (the eigenvectors of a zero matrix would be arbitrary volumes)
            components.append(np.zeros((run.n_volumes, 0)))
            counts.append(0)
            continue
        values, vectors = np.linalg.eigh((z @ z.T).astype(np.float64))
        values, vectors = values[::-1], vectors[:, ::-1]
        components.append(vectors[:, :min(n_max, z.shape[1])])  # beyond the pool's rank: arbitrary directions
        if r == 0:
            spectrum = [round(float(v / max(float(values.sum()), 1e-12)), 5) for v in values[:n_max + 1]]
        if not parallel:
            continue
        if z.shape[1] > PARALLEL_VOXELS:  # the test runs on a random subset of the pool
            z = z[:, np.sort(rng.choice(z.shape[1], PARALLEL_VOXELS, replace=False))]
            values, vectors = np.linalg.eigh((z @ z.T).astype(np.float64))
            values, vectors = values[::-1], vectors[:, ::-1]
        leading = vectors[:, :n_max].astype(np.float32)
        count, nulls = 0, []
        for i in range(min(n_max, len(values) - 1)):
            left = z - leading[:, :i] @ (leading[:, :i].T @ z) if i else z
            null = top_eigenvalue(residualise(phase_randomised(left, rng), basis))
            for _ in range(n_draws - 1):  # more draws only where one draw leaves the decision close
                if null <= 0 or not 0.8 < values[i] / (PARALLEL_RATIO * null) < 1.25:
                    break
                null = max(null, top_eigenvalue(residualise(phase_randomised(left, rng), basis)))
            nulls.append(null)
            if values[i] <= PARALLEL_RATIO * null:
                break
            count = i + 1
        counts.append(count)
        if r == 0:
            total = max(float(values.sum()), 1e-12)
            null_spectrum = [round(float(v / total), 5) for v in nulls]
    return NoiseComponents(components, counts, spectrum, null_spectrum)


def noise_pool(runs: list[SessionRun], r2: np.ndarray, rng: np.random.Generator,
               max_voxels: int = NOISE_POOL_MAX, heldout_r2: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of the noise pool: bright voxels (mean intensity at least half its 99th percentile) whose
    single-trial R² ``(n_voxels,)`` is at most the median and, with ``heldout_r2`` ``(n_voxels,)`` (the held-out runs'
    R² of the on/off model, :func:`~bids_recon.glm.estimators.stages.heldout.heldout_r2`), that the task does not
    predict (at most 0, GLMdenoise's criterion); at most ``max_voxels`` of them (drawn with ``rng``)."""
    n_voxels = len(r2)
    mean_intensity = (np.mean([r.mean_intensity for r in runs], axis=0) if runs[0].mean_intensity is not None
                      else np.ones(n_voxels))
    finite = np.isfinite(mean_intensity) & (mean_intensity > 0)
    bright = finite & (mean_intensity >= 0.5 * np.percentile(mean_intensity[finite], 99)) if finite.any() \
        else np.zeros(n_voxels, bool)
    quiet = r2 <= np.median(r2)
    if heldout_r2 is not None:
        quiet &= ~(heldout_r2 > 0)  # NaN (no held-out runs) does not exclude
    pool = np.flatnonzero(bright & quiet)
    if len(pool) > max_voxels:
        pool = np.sort(rng.choice(pool, max_voxels, replace=False))
    return pool


@dataclass
class Denoised:
    """The noise components a session kept: how many, the cross-validation curve (empty without it), and the
    components themselves (per run ``(n_volumes, n_components)``, orthonormal, orthogonal to the nuisance basis)."""

    n_components: int
    cv_noise: list[float]
    components: list[np.ndarray]


def denoise(model: SessionModel, hrf_index: np.ndarray, r2: np.ndarray, task: np.ndarray, cv: RepeatCV,
            reliable: bool, rng: np.random.Generator, max_components: int, selection: str,
            pool_max: int = NOISE_POOL_MAX, min_cv_gain: float = MIN_CV_GAIN, pool: np.ndarray | None = None
            ) -> Denoised:
    """Choose the number of noise components and project them out of the session's data and designs.

    Parameters
    ----------
    model : SessionModel
        Its runs and designs lose the chosen components (:meth:`SessionModel.project_out`).
    hrf_index, r2 : ndarray, shape (n_voxels,)
        Each voxel's HRF so far (for the cross-validation) and the single-trial R² that picks the noise pool.
    task : ndarray of int
        Voxels scored by the cross-validation.
    cv : RepeatCV
    reliable : bool
        Whether repeats predict each other (:func:`~bids_recon.glm.estimators.stages.crossval.check_repeats`).
    rng : numpy.random.Generator
        Draws the pool's subset and the parallel analysis' phases.
    max_components : int
        Largest number of components tried.
    selection : {"heldout", "cv", "parallel", "auto"}
        ``"heldout"``: the parallel analysis' count, reduced where held-out runs' prediction gets worse; ``"cv"``:
        GLMsingle's cross-validation of repeated stimuli and stopping rule; ``"parallel"``: the parallel analysis of
        the noise pool; ``"auto"``: the cross-validation when ``reliable``, the parallel analysis otherwise.
    pool_max : int
        Noise-pool voxels used (a random subset when more qualify).
    min_cv_gain : float
        With the cross-validated count, a median CV R² gain below which no noise components are used.
    pool : ndarray of int, optional
        The noise pool's voxels among the model's (default: :func:`noise_pool` of ``r2``).
    """
    info = model.info
    pool = noise_pool(model.runs, r2, rng, pool_max) if pool is None else pool
    parallel = selection in ("heldout", "parallel", "auto")
    noise = noise_components(model.runs, pool, model.bases, max_components, rng, parallel=parallel)
    # nested orthonormal components, orthogonal to the nuisance basis: the first k of them are "k components"
    nested = [np.linalg.qr(c - b @ (b.T @ c))[0] if c.shape[1] else c
              for c, b in zip(noise.components, model.bases, strict=True)]
    info.update({"NoisePoolVoxels": int(len(pool)), "TaskVoxelsForCV": int(len(task)),
                 "NoisePoolSpectrum": noise.spectrum})
    if parallel:
        info.update({"NoiseComponentsParallelAnalysis": noise.parallel_count,
                     "NoiseParallelAnalysisPerRun": noise.parallel_counts,
                     "NoisePoolNullSpectrum": noise.null_spectrum})
    if selection == "heldout":
        n_components, cv_noise = _checked_by_heldout_runs(model, hrf_index, nested, task, noise.parallel_count,
                                                          max_components, cv if reliable else None, min_cv_gain)
    else:
        n_components, cv_noise = _by_repeats_or_parallel(model, hrf_index, nested, task, cv, reliable,
                                                         max_components, selection, noise.parallel_count,
                                                         min_cv_gain)
    kept = [c[:, :n_components] for c in nested]
    model.project_out(kept)
    return Denoised(n_components, cv_noise, kept)


def _checked_by_heldout_runs(model: SessionModel, hrf_index: np.ndarray, nested: list[np.ndarray], task: np.ndarray,
                             proposed: int, max_components: int, repeats: RepeatCV | None,
                             min_cv_gain: float) -> tuple[int, list[float]]:
    """The parallel analysis' count checked by held-out runs: of the counts up to ``proposed``, the one with the
    largest mean held-out R² gain over 0 components, when that gain exceeds :data:`HELDOUT_MIN_GAIN_SE` standard
    errors; else 0. Where the held-out runs cannot tell (too few voxels predicted), the cross-validation of
    ``repeats`` (given where repeated stimuli predict each other) chooses, else the proposal stands. Returns the
    count and the curve of median held-out R² for 0..``max_components`` (for the report)."""
    info = model.info
    info["NoiseSelection"] = "parallel analysis checked by held-out runs"
    if len(model.runs) < 2:
        info["NoiseSelection"] = "none (one run: held-out runs cannot check the parallel analysis)"
        if proposed:
            warn(info, f"this session has one run: the {proposed} noise components the parallel analysis found "
                       "cannot be checked against held-out runs, so none are used.")
        return 0, []
    curve = heldout_curve(model, hrf_index, nested, list(range(max_components + 1)), task)
    gains, errors = curve.gains()
    medians = [round(float(v), 6) for v in curve.medians()]
    info.update({"CVNoiseComponents": medians, "CVNoiseGains": [round(float(g), 6) for g in gains],
                 "CVNoiseGainErrors": [round(float(e), 6) for e in errors],
                 "CVNoisePredictedVoxels": int(curve.predicted.sum())})
    if proposed == 0:
        return 0, medians
    if not curve.informative:
        unchecked = (f"the on/off model fitted on the other runs predicts the held-out runs (R² >= {PREDICTED_R2}) in "
                     f"only {int(curve.predicted.sum())} of the {len(task)} task-responsive voxels, too few to check "
                     f"the {proposed} noise components the parallel analysis found")
        if repeats is not None and repeats.enough:
            n_components, info["CVRepeatsNoiseComponents"] = _by_repeats(model, hrf_index, nested, task, repeats,
                                                                         max_components, min_cv_gain)
            info["NoiseSelection"] = "cross-validation of repeated stimuli (held-out runs could not check)"
            warn(info, f"{unchecked}; repeated stimuli predict each other, so their cross-validation chose "
                       f"{n_components}.")
            return n_components, medians
        info["NoiseSelection"] = "parallel analysis (held-out runs could not check it)"
        warn(info, f"{unchecked}: all {proposed} are used.")
        return proposed, medians
    best_count = int(np.argmax(gains[:proposed + 1]))
    n_components = best_count if gains[best_count] > HELDOUT_MIN_GAIN_SE * errors[best_count] else 0
    if n_components < proposed:
        info["NoiseComponentsDropped"] = proposed - n_components
        warn(info, f"the parallel analysis found {proposed} noise components; more than {n_components} did not "
                   "improve the prediction of held-out runs further (or made it worse: they carry task signal), so "
                   f"{n_components} are used.")
    return n_components, medians


def _by_repeats_or_parallel(model: SessionModel, hrf_index: np.ndarray, nested: list[np.ndarray], task: np.ndarray,
                            cv: RepeatCV, reliable: bool, max_components: int, selection: str, parallel_count: int,
                            min_cv_gain: float) -> tuple[int, list[float]]:
    """The count from the cross-validation of repeated stimuli (``"cv"``, or ``"auto"`` where repeats predict each
    other) or from the parallel analysis; and the repeats' CV curve when it ran."""
    info = model.info
    cv_noise: list[float] = []
    if cv.enough:
        repeats_count, cv_noise = _by_repeats(model, hrf_index, nested, task, cv, max_components, min_cv_gain)
        info["CVNoiseComponents"] = cv_noise
    if (selection == "cv" and cv.enough) or (selection == "auto" and reliable):
        n_components = repeats_count
        info["NoiseSelection"] = "cross-validation of repeated stimuli"
    else:
        n_components = parallel_count
        info["NoiseSelection"] = "parallel analysis"
    if n_components >= max_components > 0:
        warn(info, f"the largest number of noise components tried ({max_components}) was chosen by "
                   f"{info['NoiseSelection']}, which does not check that they do not remove task signal: "
                   "noise_selection = 'heldout' drops those that make the prediction of held-out runs worse.")
    return n_components, cv_noise


def _by_repeats(model: SessionModel, hrf_index: np.ndarray, nested: list[np.ndarray], task: np.ndarray,
                cv: RepeatCV, max_components: int, min_cv_gain: float) -> tuple[int, list[float]]:
    """GLMsingle's count: the betas of the training runs with ``k`` components predict the 0-component betas of the
    same stimuli in the held-out run; the smallest count within 5 % of the best gain (:func:`pcstop`), none below
    ``min_cv_gain``. Returns the count and the median CV R² per count (0..``max_components``)."""
    per_count = betas_per_count(model.runs, model.designs, hrf_index, nested, list(range(max_components + 1)), task)
    cv_noise = [float(np.nanmedian(s)) for s in cv.scores(per_count[0], per_count)]
    n_components = pcstop(np.asarray(cv_noise))
    if cv_noise[n_components] - cv_noise[0] < min_cv_gain:
        n_components = 0
    if max(cv_noise) <= 0:
        warn(model.info, f"the cross-validated R² of repeated trials is <= 0 for every number of noise components "
                         f"(best {max(cv_noise):.3f}): no count lets a trial's betas predict a repeat better than the "
                         f"session mean, so the curve only ranks the counts; {n_components} ranked best.")
    return n_components, cv_noise


def if_unreliable(selection: str) -> list[str]:
    """What the count comes from when repeats do not predict each other (only ``selection="auto"`` depends on them:
    ``"cv"`` cross-validates anyway, the others need no repeats)."""
    return [WITHOUT_CV] if selection == "auto" else []


def describe(glm: GlmSettings) -> str:
    """The noise clause of the methods text."""
    count = {
        "heldout": "whose number was proposed by a parallel analysis of the noise pool (components explaining more "
                   "variance than those of phase-randomised data) and reduced where they made the prediction of "
                   "held-out runs' time series worse (leave-one-run-out, as GLMdenoise, Kay et al. 2013)",
        "cv": "whose number was chosen by leave-one-run-out cross-validation of repeated trials (GLMsingle's rule)",
        "parallel": "whose number was chosen by a parallel analysis of the noise pool (components explaining more "
                    "variance than those of phase-randomised data)",
        "auto": "whose number was chosen by leave-one-run-out cross-validation of repeated trials where the "
                "repeats' betas predicted each other, and otherwise by a parallel analysis of the noise pool",
    }[glm.noise_selection]
    return (f"up to {glm.max_noise_components} noise regressors (principal components of a noise pool of voxels "
            f"without task response) {count}")


def references(glm: GlmSettings) -> tuple[str, ...]:
    """Reference keys of this stage given the settings: GLMdenoise (Kay et al. 2013) for the held-out time series,
    the parallel analysis (Horn 1965) where it may choose."""
    return {"heldout": ("horn1965", "kay2013"), "cv": (), "parallel": ("horn1965",), "auto": ("horn1965",)}[
        glm.noise_selection]


def without_repeats(selection: str) -> list[str]:
    """What the count comes from when too few trials repeat across runs (nothing changes for the selections that
    need no repeats)."""
    return [WITHOUT_CV] if selection in ("cv", "auto") else []
