"""``fit_session``: the single-trial betas of one session with the estimator the settings name."""

from __future__ import annotations

import numpy as np

from bids_recon.errors import UsageError
from bids_recon.glm.estimators.card import estimator_card
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
    card = estimator_card(params.estimator)
    for name in card.settings:
        allowed, value = choices_of(type(params), name), getattr(params, name)
        if allowed is not None and value not in allowed:
            raise UsageError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return card.fit(runs, params, np.random.default_rng(seed), options or FitOptions())
