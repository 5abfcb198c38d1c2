"""Single-trial GLMs: HRF library, estimators (LSA, LSS, fithrf-denoise-rr), reliability, the trial table."""

from bids_recon.glm.estimators import SessionFit, SessionRun, fit_session
from bids_recon.glm.hrf import HrfLibrary, canonical_library, default_library
from bids_recon.glm.params import ESTIMATORS, GlmParams
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
from bids_recon.glm.singletrial import load_confounds, load_events, percent_signal_change, zscore_by_group
from bids_recon.glm.trials import (
    NOT_DECODED,
    TRIAL_COLUMNS,
    apply_test_split,
    assign_repeats_and_split,
    mark_test_split,
    parse_test_split,
    read_trials,
    run_trials,
)

__all__ = [
    "ESTIMATORS",
    "GlmParams",
    "NOT_DECODED",
    "TRIAL_COLUMNS",
    "HrfLibrary",
    "RunFiles",
    "SessionBetas",
    "SessionFit",
    "SessionRun",
    "apply_test_split",
    "assign_repeats_and_split",
    "betas_to_image",
    "canonical_library",
    "combine_runs",
    "default_library",
    "estimate_session_betas",
    "fit_session",
    "intersect_masks",
    "load_confounds",
    "load_events",
    "load_image",
    "mark_test_split",
    "noise_ceiling",
    "parse_test_split",
    "percent_signal_change",
    "read_trials",
    "run_trials",
    "noise_ceiling_for_trials",
    "zscore_by_group",
]
