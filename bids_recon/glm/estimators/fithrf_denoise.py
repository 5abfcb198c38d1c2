"""``fithrf-denoise``: each voxel's HRF from a library plus noise regressors (GLMsingle's type C).

The noise components (principal components of a noise pool, one count for the session) are projected out before
the HRFs are chosen: until then the task voxels and the noise pool come from the single-trial R² with the library's
mid HRF, and only the task voxels get theirs, for the cross-validation (``FitOptions.reselect_hrf``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_recon.glm.estimators.card import EstimatorCard, register
from bids_recon.glm.estimators.options import FitOptions
from bids_recon.glm.estimators.session import GlmSettings, SessionFit, SessionRun
from bids_recon.glm.estimators.stages import design, hrfs, noise
from bids_recon.glm.estimators.stages.crossval import RepeatCV, check_repeats, count_repeats
from bids_recon.glm.estimators.stages.design import SessionModel
from bids_recon.glm.estimators.stages.ols import least_squares
from bids_recon.glm.estimators.stages.task import task_voxels
from bids_recon.glm.hrf import default_library


@dataclass
class DenoisedSession:
    """A session with each voxel's HRF chosen and its noise components projected out (before the betas)."""

    model: SessionModel
    hrf_index: np.ndarray  # (n_voxels,)
    r2: np.ndarray  # (n_voxels,) single-trial R² with the chosen HRF
    task: np.ndarray  # task-responsive voxels scored by the cross-validation
    cv: RepeatCV
    reliable: bool  # whether repeats predict each other
    kept: noise.Denoised  # the noise components kept


def denoised_session(runs: list[SessionRun], glm: GlmSettings, rng: np.random.Generator, options: FitOptions,
                     without_cv: tuple[str, ...] = (), if_unreliable: tuple[str, ...] = ()) -> DenoisedSession:
    """HRFs chosen, noise components chosen and projected out: what ``fithrf-denoise`` and the estimators built on
    it share. ``without_cv`` and ``if_unreliable`` say what a later cross-validated choice falls back to (see
    :func:`~bids_recon.glm.estimators.stages.crossval.check_repeats`)."""
    model = design.prepare(runs, glm, options.library or default_library(), options.polynomial_degree)
    screen = options.reselect_hrf
    hrf_index, r2 = hrfs.canonical_screen(model) if screen else hrfs.choose_hrfs(model, options.hrf_selection)
    task = task_voxels(r2, rng, options.task_voxels_max)
    cv = count_repeats(model)
    if screen and cv.enough:  # the task voxels' HRFs, for the cross-validation before denoising
        hrf_index[task] = hrfs.select_hrf(model.runs, model.designs, options.hrf_selection, task)[0]
    reliable = check_repeats(model, cv, hrf_index, task, rng, [noise.WITHOUT_CV, *without_cv],
                             [*noise.if_unreliable(glm.noise_selection), *if_unreliable])
    kept = noise.denoise(model, hrf_index, r2, task, cv, reliable, rng, glm.max_noise_components, glm.noise_selection,
                         options.noise_pool_max, options.min_cv_gain)
    if screen:  # shared noise no longer sways the choice
        hrf_index, r2 = hrfs.choose_hrfs(model, options.hrf_selection)
    model.info["NoiseComponents"] = kept.n_components
    hrfs.record_hrfs(model, hrf_index, task)
    return DenoisedSession(model, hrf_index, r2, task, cv, reliable, kept)


@register
class FitHrfDenoise(EstimatorCard):
    name = "fithrf-denoise"
    rank = 40
    summary = "fithrf + noise regressors, see the noise_selection setting"
    settings = (*design.SETTINGS, *noise.SETTINGS)

    def methods(self, glm: GlmSettings) -> str:
        return (f"a GLMsingle-style estimator (Prince et al. 2022): HRF chosen per voxel from {hrfs.library_text()}, "
                f"plus {noise.describe(glm)}")

    def references(self, glm: GlmSettings) -> tuple[str, ...]:
        return ("prince2022", *noise.references(glm))

    def fit(self, runs: list[SessionRun], glm: GlmSettings, rng: np.random.Generator,
            options: FitOptions) -> SessionFit:
        s = denoised_session(runs, glm, rng, options)
        return s.model.result(least_squares(s.model, s.hrf_index), s.hrf_index, s.r2,
                              n_noise_components=s.kept.n_components, cv_noise=s.kept.cv_noise)
