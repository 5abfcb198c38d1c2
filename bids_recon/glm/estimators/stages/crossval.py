"""Cross-validation over repeated stimuli: the pairs of trials of one stimulus in different runs, and whether their
betas predict each other well enough to guide a choice (the number of noise components, the ridge)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_recon.glm.estimators.session import warn
from bids_recon.glm.estimators.stages.design import SessionModel
from bids_recon.glm.estimators.stages.ols import betas_per_count

#: Fewest trials with a repeat in another run for the cross-validation to be run at all.
MIN_CV_TRIALS = 10
#: Below this many cross-validated trials the CV curves are flagged as noisy.
FEW_CV_TRIALS = 30
#: Repeats count as predicting each other when their betas' median correlation exceeds that of shuffled pairs by
#: this many standard deviations.
RELIABILITY_Z = 3.0


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

    @property
    def enough(self) -> bool:
        """Whether enough trials (:data:`MIN_CV_TRIALS`) have a repeat in another run to cross-validate at all."""
        return len(self) >= MIN_CV_TRIALS

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


def count_repeats(model: SessionModel) -> RepeatCV:
    """The session's repeat pairs (their number of trials goes into the fit's info)."""
    cv = RepeatCV.build([run.stim_ids for run in model.runs])
    model.info["CrossValidatedTrials"] = len(cv)
    return cv


def check_repeats(model: SessionModel, cv: RepeatCV, hrf_index: np.ndarray, task: np.ndarray,
                  rng: np.random.Generator, without_cv: list[str], if_unreliable: list[str]) -> bool:
    """Can the cross-validation of repeats guide the choices? Warns when it cannot, saying what is done instead.

    Parameters
    ----------
    model : SessionModel
    cv : RepeatCV
    hrf_index : ndarray, shape (n_voxels,)
        HRF of each voxel (at least of the ``task`` voxels) for the least-squares betas whose repeats are compared.
    task : ndarray of int
        Task-responsive voxels (:func:`~bids_recon.glm.estimators.stages.task.task_voxels`).
    rng : numpy.random.Generator
        Draws the shuffled pairs of :meth:`RepeatCV.reliability`.
    without_cv, if_unreliable : list of str
        What each cross-validated choice falls back to when too few trials repeat across runs, and when repeats do
        not predict each other (phrases of the warnings).

    Returns
    -------
    bool
        Whether the repeats' betas correlate more than those of different stimuli (:data:`RELIABILITY_Z`).
    """
    info = model.info
    if not cv.enough:
        message = (f"only {len(cv)} trials have a repeat of their stimulus in another run of this session, too few "
                   "to cross-validate") + (": " + "; ".join(without_cv) if without_cv else "") + "."
        info["CrossValidation"] = message
        warn(info, message)
        return False
    if len(cv) < FEW_CV_TRIALS:
        warn(info, f"only {len(cv)} trials have a repeat in another run: the cross-validation curves are noisy.")
    reference = betas_per_count(model.runs, model.designs, hrf_index, None, [0], task)[0]
    observed, null_mean, null_sd = cv.reliability(reference, rng)
    reliable = observed > null_mean + RELIABILITY_Z * null_sd and observed > 0
    info["RepeatReliability"] = {"MedianCorrelation": round(observed, 4), "ShuffledMean": round(null_mean, 4),
                                 "ShuffledSD": round(null_sd, 4)}
    if not reliable:
        warn(info, "repeats of a stimulus do not predict each other in this session (median correlation of repeated "
                   f"trials' betas {observed:.3f}; pairs of different stimuli {null_mean:.3f} ± {null_sd:.3f}): "
                   "single-trial responses vary more than they repeat, or the signal is weak, so the cross-validation "
                   "curves cannot guide the choices"
                   + (": " + " and ".join(if_unreliable) + ", which need no repeats." if if_unreliable else "."))
    return reliable
