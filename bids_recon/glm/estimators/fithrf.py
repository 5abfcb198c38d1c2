"""``fithrf``: least squares with each voxel's HRF chosen from a library (GLMsingle's type B)."""

from __future__ import annotations

import numpy as np

from bids_recon.glm.estimators.card import EstimatorCard, register
from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.glm.estimators.stages import design, hrfs
from bids_recon.glm.estimators.stages.crossval import count_repeats
from bids_recon.glm.estimators.stages.ols import least_squares
from bids_recon.glm.estimators.stages.task import task_voxels
from bids_recon.glm.hrf import default_library


@register
class FitHrf(EstimatorCard):
    name = "fithrf"
    rank = 30
    summary = "least squares with each voxel's HRF from GLMsingle's library"
    settings = design.SETTINGS

    def methods(self, glm: GlmSettings) -> str:
        return (f"a least-squares-all GLM whose HRF was chosen per voxel from {hrfs.library_text()} by variance "
                "explained")

    def references(self, glm: GlmSettings) -> tuple[str, ...]:
        return ("prince2022",)

    def fit(self, runs: list[SessionRun], glm: GlmSettings, rng: np.random.Generator,
            options: FitOptions) -> SessionFit:
        model = design.prepare(runs, glm, options.library or default_library(), options.polynomial_degree)
        hrf_index, r2 = hrfs.choose_hrfs(model, options.hrf_selection)
        task = task_voxels(r2, rng, options.task_voxels_max)
        count_repeats(model)
        model.info["NoiseComponents"] = 0
        hrfs.record_hrfs(model, hrf_index, task)
        return model.result(least_squares(model, hrf_index), hrf_index, r2)
