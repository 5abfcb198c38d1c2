"""``lsa``: least squares, all trials in one GLM, each trial's regressor with the canonical HRF."""

from __future__ import annotations

import numpy as np

from bids_recon.glm.estimators.card import EstimatorCard, register
from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.glm.estimators.stages import design, hrfs
from bids_recon.glm.estimators.stages.crossval import count_repeats
from bids_recon.glm.estimators.stages.ols import least_squares
from bids_recon.glm.hrf import canonical_library


@register
class LeastSquaresAll(EstimatorCard):
    name = "lsa"
    rank = 10
    summary = "least squares, all trials in one GLM, canonical HRF"
    settings = design.SETTINGS

    def methods(self, glm: GlmSettings) -> str:
        return "a least-squares-all GLM: one regressor per trial convolved with a canonical (Glover) HRF"

    def references(self, glm: GlmSettings) -> tuple[str, ...]:
        return ("glover1999",)

    def fit(self, runs: list[SessionRun], glm: GlmSettings, rng: np.random.Generator,
            options: FitOptions) -> SessionFit:
        model = design.prepare(runs, glm, canonical_library(), options.polynomial_degree)
        hrf_index, r2 = hrfs.single_hrf(model)
        count_repeats(model)
        model.info["NoiseComponents"] = 0
        return model.result(least_squares(model, hrf_index), hrf_index, r2)
