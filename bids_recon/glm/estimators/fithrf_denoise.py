"""``fithrf-denoise``: each voxel's HRF from a library plus noise regressors (GLMsingle's type C).

Each voxel's HRF is chosen first; the task voxels (scored by the cross-validations) and the noise pool come from the
single-trial R² with it. Once noise components are projected out, the HRFs are chosen again
(``FitOptions.reselect_hrf``). The steps run a chunk of voxels at a time (:mod:`~bids_recon.glm.estimators.chunked`).
"""

from __future__ import annotations

import numpy as np

from bids_recon.glm.estimators.card import EstimatorCard, register
from bids_recon.glm.estimators.chunked import ArraySource, VoxelSource, fit_chunked
from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.glm.estimators.stages import design, hrfs, noise


@register
class FitHrfDenoise(EstimatorCard):
    name = "fithrf-denoise"
    rank = 40
    summary = "fithrf + noise regressors, see the noise_selection setting"
    settings = (*design.SETTINGS, *noise.SETTINGS)
    chunked = True

    def methods(self, glm: GlmSettings) -> str:
        return (f"a GLMsingle-style estimator (Prince et al. 2022): HRF chosen per voxel from {hrfs.library_text()}, "
                f"plus {noise.describe(glm)}")

    def references(self, glm: GlmSettings) -> tuple[str, ...]:
        return ("prince2022", *noise.references(glm))

    def fit(self, runs: list[SessionRun], glm: GlmSettings, rng: np.random.Generator,
            options: FitOptions) -> SessionFit:
        return self.fit_source(ArraySource(runs), glm, rng, options, voxels_per_chunk=len(runs[0].data.T))

    def fit_source(self, source: VoxelSource, glm: GlmSettings, rng: np.random.Generator, options: FitOptions,
                   betas_out: list[np.ndarray] | None = None, voxels_per_chunk: int | None = None) -> SessionFit:
        return fit_chunked(source, glm, rng, options, denoise=True, ridge_selection=None, betas_out=betas_out,
                           voxels_per_chunk=voxels_per_chunk)
