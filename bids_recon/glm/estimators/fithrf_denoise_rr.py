"""``fithrf-denoise-rr`` (the default): ``fithrf-denoise`` plus a ridge per voxel (GLMsingle's type D)."""

from __future__ import annotations

import numpy as np

from bids_recon.glm.estimators.card import EstimatorCard, register
from bids_recon.glm.estimators.fithrf_denoise import denoised_session
from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.glm.estimators.stages import design, hrfs, noise, ridge


@register
class FitHrfDenoiseRidge(EstimatorCard):
    name = "fithrf-denoise-rr"
    rank = 50
    summary = "fithrf-denoise + ridge per voxel, see the fraction_selection setting; GLMsingle-class"
    settings = (*design.SETTINGS, *noise.SETTINGS, *ridge.SETTINGS)

    def methods(self, glm: GlmSettings) -> str:
        return (f"a GLMsingle-style estimator (Prince et al. 2022): HRF chosen per voxel from {hrfs.library_text()}, "
                f"{noise.describe(glm)}, {ridge.describe(glm)}")

    def references(self, glm: GlmSettings) -> tuple[str, ...]:
        return ("prince2022", *noise.references(glm), *ridge.references(glm))

    def fit(self, runs: list[SessionRun], glm: GlmSettings, rng: np.random.Generator,
            options: FitOptions) -> SessionFit:
        s = denoised_session(runs, glm, rng, options, (ridge.WITHOUT_CV,), (ridge.IF_UNRELIABLE,))
        betas, fractions, cv_fractions = ridge.ridge(s.model, s.hrf_index, s.task, s.cv, s.reliable,
                                                     glm.fraction_selection, options.fractions)
        return s.model.result(betas, s.hrf_index, s.r2, fractions, s.kept.n_components, s.kept.cv_noise,
                              cv_fractions)
