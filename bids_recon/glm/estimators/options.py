"""The estimators' knobs that are not user settings: tests, benchmarks and method studies change them."""

from __future__ import annotations

from dataclasses import dataclass

from bids_recon.errors import UsageError
from bids_recon.glm.estimators.stages.hrfs import HRF_SELECTIONS
from bids_recon.glm.estimators.stages.noise import MIN_CV_GAIN, NOISE_POOL_MAX
from bids_recon.glm.estimators.stages.ridge import DEFAULT_FRACTIONS
from bids_recon.glm.estimators.stages.task import TASK_VOXELS_MAX
from bids_recon.glm.hrf import HrfLibrary


@dataclass(frozen=True)
class FitOptions:
    """How an estimator runs, beyond the ``[workflow.glm]`` settings (the defaults are the pipeline's).

    Attributes
    ----------
    library : HrfLibrary, optional
        HRF library of the ``fithrf`` estimators (default: :func:`~bids_recon.glm.hrf.default_library`,
        GLMsingle's).
    fractions : tuple of float
        Ridge fractions of the cross-validated selections and of the diagnostic CV curve (1.0 must be first).
    noise_pool_max : int
        Noise-pool voxels used for the components (a seeded random subset when more qualify).
    min_cv_gain : float
        With the cross-validated count, a median CV R² gain below which no noise components are used.
    hrf_selection : {"singletrial", "onoff"}
        Model whose variance explained picks each voxel's HRF
        (see :func:`~bids_recon.glm.estimators.stages.hrfs.select_hrf`).
    polynomial_degree : int, optional
        Degree of the polynomial drift (default: run minutes / 2, rounded).
    task_voxels_max : int
        Task-responsive voxels (highest single-trial R²) whose betas the cross-validation scores.
    reselect_hrf : bool
        With denoising, choose each voxel's HRF again once noise components are projected out (they are chosen
        first in any case: the task voxels and the noise pool come from the R² with them); ``False`` keeps the
        first choice, as GLMsingle.
    """

    library: HrfLibrary | None = None
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    noise_pool_max: int = NOISE_POOL_MAX
    min_cv_gain: float = MIN_CV_GAIN
    hrf_selection: str = "singletrial"
    polynomial_degree: int | None = None
    task_voxels_max: int = TASK_VOXELS_MAX
    reselect_hrf: bool = True

    def __post_init__(self) -> None:
        if self.hrf_selection not in HRF_SELECTIONS:
            raise UsageError(f"hrf_selection must be one of {', '.join(HRF_SELECTIONS)}; got {self.hrf_selection!r}")
