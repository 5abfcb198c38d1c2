"""``fit_session``: the single-trial betas of one session with the estimator the settings name."""

from __future__ import annotations

import numpy as np

from bids_recon.errors import UsageError
from bids_recon.glm.estimators.card import EstimatorCard, estimator_card
from bids_recon.glm.estimators.chunked import VoxelSource
from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.params import choices_of


def fit_session(runs: list[SessionRun], params: GlmSettings, seed: int = 0,
                options: FitOptions | None = None) -> SessionFit:
    """Estimate single-trial betas for the runs of one session.

    Parameters
    ----------
    runs : list of SessionRun
        Their ``data`` are residualised in place (float32, no copies of the whole session are made).
    params : GlmParams
        The ``[workflow.glm]`` settings (:class:`bids_recon.glm.params.GlmParams`): ``estimator`` (one of
        :data:`~bids_recon.glm.estimators.card.ESTIMATORS`) and the settings its card reads (drift model and
        cut-off; noise components and ``noise_selection``; ``fraction_selection``).
    seed : int
        Seed of the noise-pool and task-voxel subsets and of the parallel analysis.
    options : FitOptions, optional
        Knobs beyond the settings (HRF library, ridge fractions, subset sizes, ...); the defaults when omitted.

    Returns
    -------
    SessionFit

    Raises
    ------
    UsageError
        An unknown estimator, or a setting the estimator reads outside its allowed values (exit 64).
    """
    card = _checked_card(params)
    return card.fit(runs, params, np.random.default_rng(seed), options or FitOptions())


def fit_session_source(source: VoxelSource, params: GlmSettings, seed: int = 0, options: FitOptions | None = None,
                       betas_out: list[np.ndarray] | None = None, voxels_per_chunk: int | None = None) -> SessionFit:
    """:func:`fit_session` for a session read from ``source`` a chunk of voxels at a time (the estimators whose card
    is ``chunked``; the others read the whole session), betas written into ``betas_out`` when given.

    Parameters
    ----------
    source : VoxelSource
        :class:`~bids_recon.glm.estimators.chunked.NpySource` (runs in ``.npy`` files) or
        :class:`~bids_recon.glm.estimators.chunked.ArraySource` (in memory).
    params, seed, options
        As :func:`fit_session`.
    betas_out : list of ndarray, each (n_trials_run, n_voxels), optional
        Where the betas go (arrays or writable memory maps).
    voxels_per_chunk : int, optional
        Default: a chunk of all runs' time series takes about
        :data:`~bids_recon.glm.estimators.chunked.CHUNK_BYTES`. The betas do not depend on it.
    """
    card = _checked_card(params)
    return card.fit_source(source, params, np.random.default_rng(seed), options or FitOptions(), betas_out,
                           voxels_per_chunk)


def _checked_card(params: GlmSettings) -> EstimatorCard:
    """The estimator's card, once the settings it reads are checked against their allowed values."""
    card = estimator_card(params.estimator)
    for name in card.settings:
        allowed, value = choices_of(type(params), name), getattr(params, name)
        if allowed is not None and value not in allowed:
            raise UsageError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return card
