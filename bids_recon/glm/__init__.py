"""Single-trial GLMs: HRF library, estimators (LSA, LSS, fithrf-denoise-rr), reliability."""

from bids_recon.glm.estimators import (
    ESTIMATORS,
    EstimatorCard,
    FitOptions,
    SessionFit,
    SessionRun,
    estimator_card,
    fit_session,
)
from bids_recon.glm.hrf import HrfLibrary, canonical_library, default_library
from bids_recon.glm.params import GlmParams
from bids_recon.glm.reliability import noise_ceiling, noise_ceiling_for_trials
from bids_recon.glm.runs import (
    RunFiles,
    SessionBetas,
    betas_to_image,
    combine_runs,
    estimate_session_betas,
    intersect_masks,
    load_image,
)
from bids_recon.glm.singletrial import percent_signal_change, zscore_by_group

__all__ = [
    "ESTIMATORS",
    "EstimatorCard",
    "FitOptions",
    "GlmParams",
    "HrfLibrary",
    "RunFiles",
    "SessionBetas",
    "SessionFit",
    "SessionRun",
    "betas_to_image",
    "canonical_library",
    "combine_runs",
    "default_library",
    "estimate_session_betas",
    "estimator_card",
    "fit_session",
    "intersect_masks",
    "load_image",
    "noise_ceiling",
    "percent_signal_change",
    "noise_ceiling_for_trials",
    "zscore_by_group",
]
