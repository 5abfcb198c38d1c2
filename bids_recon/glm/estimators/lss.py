"""``lss``: least squares separate (Mumford et al. 2012), one GLM per trial with the canonical HRF."""

from __future__ import annotations

import numpy as np

from bids_recon.glm.estimators.card import EstimatorCard, register
from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.glm.estimators.stages import design, hrfs
from bids_recon.glm.estimators.stages.lss import lss_betas
from bids_recon.glm.hrf import canonical_library


@register
class LeastSquaresSeparate(EstimatorCard):
    name = "lss"
    rank = 20
    summary = "least-squares separate: one GLM per trial, canonical HRF"
    settings = design.SETTINGS

    def methods(self, glm: GlmSettings) -> str:
        return ("least-squares-separate GLMs (Mumford et al. 2012): for each trial, its regressor and one for all "
                "other trials, canonical (Glover) HRF")

    def references(self, glm: GlmSettings) -> tuple[str, ...]:
        return ("glover1999", "mumford2012")

    def fit(self, runs: list[SessionRun], glm: GlmSettings, rng: np.random.Generator,
            options: FitOptions) -> SessionFit:
        model = design.prepare(runs, glm, canonical_library(), options.polynomial_degree)
        betas = [lss_betas(x[0], run.data) for run, x in zip(model.runs, model.designs, strict=True)]
        hrf_index, r2 = hrfs.single_hrf(model)
        return model.result(betas, hrf_index, r2)
