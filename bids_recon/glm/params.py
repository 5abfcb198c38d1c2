"""Settings of the single-trial beta stage (``[workflow.glm]``): the one place their defaults live."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from bids_recon.design.confounds import DEFAULT_CONFOUNDS, check_confounds_setting
from bids_recon.params import problem_of, setting


def _estimators() -> ModuleType:
    """:mod:`bids_recon.glm.estimators`, imported when a choice is first asked for (importing it registers every
    estimator); its stages own the vocabularies of the drift, noise and ridge settings."""
    from bids_recon.glm import estimators

    return estimators


def _check_confounds(spec: list[str]) -> str | None:
    return check_confounds_setting(spec)


def _check_betas(spec: str) -> str | None:
    from bids_recon.glm.importers import parse_betas

    return problem_of(parse_betas, spec)


@dataclass
class GlmParams:
    """How single-trial betas are estimated (see :func:`bids_recon.glm.estimators.fit_session`)."""

    estimator: str = setting("fithrf-denoise-rr", choices=lambda: list(_estimators().ESTIMATORS),
                             doc=lambda: _estimators().estimators_doc())
    drift_model: str = setting("polynomial", choices=lambda: _estimators().DRIFT_MODELS, doc=(
        "drift regressors: Legendre polynomials of degree round(run minutes / 2) as GLMsingle ('polynomial'), or a "
        "discrete cosine basis with cut-off high_pass_hz ('cosine')"))
    high_pass_hz: float = setting(0.01, gt=0, lt=1, doc="cut-off (Hz) of the cosine drift regressors "
                                                       "(drift_model = 'cosine' only)")
    confounds: list[str] = setting(factory=lambda: ["auto"], check=_check_confounds, doc=(
        "fMRIPrep confounds regressed out of every run: column names or groups motion6, motion12, motion24 (with "
        "_derivative1, _power2), csf, wm, global, fd, nss (every non_steady_state_outlier column), cosine, "
        "acompcor:K (the combined mask's first K a_comp_cor, by the confounds sidecar's Mask when it has one), "
        "tcompcor:K; 'none'; or 'auto' = " + " ".join(DEFAULT_CONFOUNDS) + ", each where the run's table has it "
        "(skipped groups are logged and reported). What is named must be in every run's table (else exit 65)"))
    max_noise_components: int = setting(10, ge=0, le=50, doc="largest number of noise regressors tried")
    noise_selection: str = setting("heldout", choices=lambda: _estimators().NOISE_SELECTIONS, doc=(
        "number of noise regressors: a parallel analysis of the noise pool proposes it and held-out runs check it "
        "(the count up to it that best improves the leave-one-run-out prediction of the time series, as GLMdenoise; "
        "no repeats needed; none with one run: 'heldout'), GLMsingle's cross-validation over repeated stimuli "
        "('cv'), the parallel analysis alone ('parallel'), or the earlier default: 'cv' where the repeats predict "
        "each other, 'parallel' otherwise ('auto')"))
    fraction_selection: str = setting("evidence", choices=lambda: _estimators().FRACTION_SELECTIONS, doc=(
        "ridge of the estimators that fit one: per voxel by maximum marginal likelihood, no repeats needed "
        "('evidence'), or a cross-validated fraction of the least-squares norm once per session ('session') or per "
        "voxel as GLMsingle ('voxel'); the cross-validated choices fall back to 'evidence' with a warning when "
        "repeats are too few"))
    zscore_per_session: bool = setting(True, doc="z-score each voxel's betas within each session")
    betas: str = setting("", check=_check_betas, doc=(
        "FORMAT=PATH[:KEY=VALUE,...]: import published single-trial betas instead of running the GLM (formats: nsd, "
        "glmsingle, bold5000, things, bids = bids_recon's own outputs; options scale=, mask=, voxels=brain|rois and "
        "the format's own, see the importers' documentation); empty or 'none': estimate betas with the GLM"))
