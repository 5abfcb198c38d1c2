"""``fithrf``: least squares with each voxel's HRF chosen from a library (GLMsingle's type B)."""

from __future__ import annotations

import numpy as np

from bids_recon.glm.estimators.card import EstimatorCard, register
from bids_recon.glm.estimators.chunked import ArraySource, VoxelSource, fit_chunked
from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.glm.estimators.stages import design, hrfs


@register
class FitHrf(EstimatorCard):
    name = "fithrf"
    rank = 30
    summary = "least squares with each voxel's HRF from GLMsingle's library"
    settings = design.SETTINGS
    chunked = True

    def methods(self, glm: GlmSettings) -> str:
        return (f"a least-squares-all GLM whose HRF was chosen per voxel from {hrfs.library_text()} by variance "
                "explained")

    def references(self, glm: GlmSettings) -> tuple[str, ...]:
        return ("prince2022",)

    def fit(self, runs: list[SessionRun], glm: GlmSettings, rng: np.random.Generator,
            options: FitOptions) -> SessionFit:
        return self.fit_source(ArraySource(runs), glm, rng, options, voxels_per_chunk=len(runs[0].data.T))

    def fit_source(self, source: VoxelSource, glm: GlmSettings, rng: np.random.Generator, options: FitOptions,
                   betas_out: list[np.ndarray] | None = None, voxels_per_chunk: int | None = None) -> SessionFit:
        return fit_chunked(source, glm, rng, options, denoise=False, ridge_selection=None, betas_out=betas_out,
                           voxels_per_chunk=voxels_per_chunk)
