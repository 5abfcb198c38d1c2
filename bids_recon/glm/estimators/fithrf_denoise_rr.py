"""``fithrf-denoise-rr`` (the default): ``fithrf-denoise`` plus a ridge per voxel (GLMsingle's type D)."""

from __future__ import annotations

import numpy as np

from bids_recon.glm.estimators.card import EstimatorCard, register
from bids_recon.glm.estimators.chunked import ArraySource, VoxelSource, fit_chunked
from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.glm.estimators.stages import design, hrfs, noise, ridge


@register
class FitHrfDenoiseRidge(EstimatorCard):
    name = "fithrf-denoise-rr"
    rank = 50
    summary = "fithrf-denoise + ridge per voxel, see the fraction_selection setting; GLMsingle-class"
    settings = (*design.SETTINGS, *noise.SETTINGS, *ridge.SETTINGS)
    chunked = True

    def methods(self, glm: GlmSettings) -> str:
        return (f"a GLMsingle-style estimator (Prince et al. 2022): HRF chosen per voxel from {hrfs.library_text()}, "
                f"{noise.describe(glm)}, {ridge.describe(glm)}")

    def references(self, glm: GlmSettings) -> tuple[str, ...]:
        return ("prince2022", *noise.references(glm), *ridge.references(glm))

    def fit(self, runs: list[SessionRun], glm: GlmSettings, rng: np.random.Generator,
            options: FitOptions) -> SessionFit:
        return self.fit_source(ArraySource(runs), glm, rng, options, voxels_per_chunk=len(runs[0].data.T))

    def fit_source(self, source: VoxelSource, glm: GlmSettings, rng: np.random.Generator, options: FitOptions,
                   betas_out: list[np.ndarray] | None = None, voxels_per_chunk: int | None = None) -> SessionFit:
        return fit_chunked(source, glm, rng, options, denoise=True, ridge_selection=glm.fraction_selection,
                           betas_out=betas_out, voxels_per_chunk=voxels_per_chunk)
