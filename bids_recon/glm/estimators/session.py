"""What every estimator takes and gives: the runs of a session, its settings, the knobs, the fit and its log."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

LOGGER = logging.getLogger("bids_recon.glm")


class GlmSettings(Protocol):
    """The ``[workflow.glm]`` settings an estimator may read (:class:`bids_recon.glm.params.GlmParams`).

    A protocol, so that the estimators need not import the settings class (whose ``estimator`` choices come from
    the estimators' registry).
    """

    estimator: str
    drift_model: str
    high_pass_hz: float
    max_noise_components: int
    noise_selection: str
    fraction_selection: str


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
    modulations : ndarray, shape (n_trials,), optional
        Scale of each trial's regressor (the events' ``modulation``, :mod:`bids_recon.design.modulation`): a beta is
        then the peak response divided by it. Default: 1.
    start_time : float
        Seconds after a volume's start that its data stand for (fMRIPrep's ``StartTime`` after slice-timing
        correction; 0 without it): volume ``k`` is modelled at ``k * repetition_time + start_time``.
    """

    data: np.ndarray
    onsets: np.ndarray
    durations: np.ndarray
    stim_ids: np.ndarray
    repetition_time: float
    confounds: np.ndarray | None = None
    mean_intensity: np.ndarray | None = None
    modulations: np.ndarray | None = None
    start_time: float = 0.0

    @property
    def n_volumes(self) -> int:
        return int(self.data.shape[0])

    @property
    def frame_times(self) -> np.ndarray:
        """Seconds, shape (n_volumes,): the time each volume stands for, relative to the events' zero."""
        return np.arange(self.n_volumes) * self.repetition_time + self.start_time


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
        Median cross-validated R² (see :class:`~bids_recon.glm.estimators.stages.crossval.RepeatCV`) over the task
        voxels for 0, 1, ... noise components (empty if not run).
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


def warn(info: dict[str, Any], message: str) -> None:
    """Add a plain-language warning to a fit's ``info["Warnings"]`` and log it (``bids_recon.glm``)."""
    info["Warnings"].append(message)
    LOGGER.warning(message)


__all__ = ["LOGGER", "GlmSettings", "SessionFit", "SessionRun", "warn"]
