"""Single-trial GLMs: design matrices, estimators, the trial table."""

from bids_recon.glm.runs import (
    RunBetas,
    betas_to_image,
    combine_runs,
    estimate_run_betas,
    intersect_masks,
    load_image,
)
from bids_recon.glm.singletrial import (
    fit_ols,
    load_confounds,
    load_events,
    lsa_design,
    percent_signal_change,
    zscore_by_group,
)
from bids_recon.glm.trials import TRIAL_COLUMNS, assign_repeats_and_split, run_trials

__all__ = [
    "TRIAL_COLUMNS",
    "RunBetas",
    "assign_repeats_and_split",
    "betas_to_image",
    "combine_runs",
    "estimate_run_betas",
    "fit_ols",
    "intersect_masks",
    "load_confounds",
    "load_events",
    "load_image",
    "lsa_design",
    "percent_signal_change",
    "run_trials",
    "zscore_by_group",
]
