"""Single-trial estimators against the simulator's ground truth and against reference implementations."""

from __future__ import annotations

import numpy as np
import pytest

from bids_recon.bids.layout import collect_inputs
from bids_recon.config import Config
from bids_recon.glm import (
    GlmParams,
    RunFiles,
    SessionRun,
    estimate_session_betas,
    fit_session,
    noise_ceiling,
)
from bids_recon.glm.estimators import FitOptions
from bids_recon.glm.estimators.stages.lss import lss_betas
from bids_recon.glm.estimators.stages.ridge import FractionalRidge
from bids_recon.glm.hrf import double_gamma_library
from bids_recon.sim import load_truth


def _session(dataset, estimator, subject="01", confounds=None, **options):
    inputs = collect_inputs(dataset.bids_dir, dataset.fmriprep_dir)[subject]
    from bids_recon.glm import intersect_masks

    mask_img = intersect_masks([r.brain_mask for r in inputs.runs])
    files = [RunFiles(r.preproc_bold, r.events, r.confounds, r.repetition_time, r.subject, r.session, r.run)
             for r in inputs.runs]
    columns = Config().workflow.glm.confounds if confounds is None else confounds
    result = estimate_session_betas(files, mask_img, GlmParams(estimator=estimator, confounds=list(columns)),
                                    options=FitOptions(**options))
    truth = load_truth(dataset.truth_dir, subject)
    ours = np.asarray(mask_img.dataobj) > 0
    position = np.full(truth["mask"].shape, -1)
    position[truth["mask"]] = np.arange(int(truth["mask"].sum()))
    return result, truth, position[ours]


def _accuracy(result, truth, columns) -> float:
    betas = np.concatenate(result.betas)
    amplitudes = truth["amplitudes"][:, columns]
    signal = np.flatnonzero(truth["signal"][columns])
    return float(np.median([np.corrcoef(betas[:, v], amplitudes[:, v])[0, 1] for v in signal]))


@pytest.fixture(scope="module")
def fits(tiny_dataset):
    return {name: _session(tiny_dataset, name) for name in ("lsa", "lss", "fithrf-denoise-rr")}


def test_full_estimator_beats_lsa(fits):
    accuracy = {name: _accuracy(*fit) for name, fit in fits.items()}
    assert accuracy["fithrf-denoise-rr"] > accuracy["lsa"] + 0.05, accuracy
    assert accuracy["lss"] > accuracy["lsa"], accuracy


def test_hrf_selection_recovers_true_hrf(tiny_dataset):
    # the simulator draws double-gamma HRFs (time to peak 4-7 s): with a library of that family the choice must
    # find them (the default library, GLMsingle's measured shapes, peaks 2.7-5.7 s and is tested on the
    # independent family in test_glm_accuracy.py)
    result, truth, columns = _session(tiny_dataset, "fithrf-denoise-rr", library=double_gamma_library())
    signal = np.flatnonzero(truth["signal"][columns])
    chosen = double_gamma_library().time_to_peak[result.fit.hrf_index[signal]]
    true = truth["hrf_peak"][columns][signal]
    assert np.mean(np.abs(chosen - true) <= 0.75) > 0.55  # random choices land there ~45% of the time
    assert np.corrcoef(chosen, true)[0, 1] > 0.3


def test_outputs_keep_units_and_shapes(fits):
    lsa, _, _ = fits["lsa"]
    full, _, _ = fits["fithrf-denoise-rr"]
    assert [b.shape for b in full.betas] == [b.shape for b in lsa.betas]
    # ridge betas are rescaled to the least-squares scale (percent signal change)
    ratio = np.std(np.concatenate(full.betas)) / np.std(np.concatenate(lsa.betas))
    assert 0.5 < ratio < 1.5, ratio
    assert full.fit.fractions.min() >= 0.05 and full.fit.fractions.max() <= 1.0
    assert len(full.fit.cv_noise) == 11  # 0..10 components were cross-validated


def test_deterministic(tiny_dataset):
    first, _, _ = _session(tiny_dataset, "fithrf-denoise-rr", subject="02")
    second, _, _ = _session(tiny_dataset, "fithrf-denoise-rr", subject="02")
    for a, b in zip(first.betas, second.betas, strict=True):
        np.testing.assert_array_equal(a, b)


def _synthetic_runs(shared_sd: float, seed: int = 0, n_runs: int = 4, n_vox: int = 600):
    """Runs with repeated stimuli and, optionally, broadband shared noise with voxel loadings."""
    rng = np.random.default_rng(seed)
    tr, n_vol = 1.0, 240
    stimuli = np.arange(40)
    response = rng.normal(0, 1, (len(stimuli), n_vox))
    runs = []
    for _ in range(n_runs):
        order = rng.permutation(stimuli)
        onsets = 8.0 + 5.0 * np.arange(len(order))
        from bids_recon.glm.hrf import canonical_library, trial_regressors

        x = trial_regressors(canonical_library(), onsets, np.full(len(order), 2.0), np.arange(n_vol) * tr)[0]
        shared = rng.normal(0, 1, (n_vol, 3)) @ rng.normal(0, shared_sd, (3, n_vox))
        data = (x @ response[order] + rng.normal(0, 1.0, (n_vol, n_vox)) + shared).astype(np.float32)
        runs.append(SessionRun(data, onsets, np.full(len(order), 2.0), order.astype(str), tr,
                               mean_intensity=np.full(n_vox, 1000.0)))
    return runs


def test_noise_components_chosen_only_when_there_is_shared_noise():
    denoise = GlmParams(estimator="fithrf-denoise")
    assert fit_session(_synthetic_runs(0.0), denoise).n_noise_components == 0
    assert fit_session(_synthetic_runs(2.0), denoise).n_noise_components > 0


def test_a_voxel_without_intensity_leaves_the_noise_pool_and_its_components_alone():
    """One NaN voxel once made the brightness percentile NaN: an empty noise pool, whose 'components' were
    arbitrary single volumes, and CV candidates with betas of 1e24 (found by the strict RuntimeWarnings)."""
    clean = fit_session(_synthetic_runs(2.0), GlmParams(estimator="fithrf-denoise"))
    runs = _synthetic_runs(2.0)
    for run in runs:
        run.mean_intensity = run.mean_intensity.copy()
        run.mean_intensity[:3] = np.nan  # an unusable voxel's mean (the pipeline now writes 0 for those)
        run.mean_intensity[3:6] = 0.0
    broken = fit_session(runs, GlmParams(estimator="fithrf-denoise"))
    assert broken.info["NoisePoolVoxels"] >= clean.info["NoisePoolVoxels"] - 6 > 0
    assert broken.n_noise_components == clean.n_noise_components > 0
    assert max(np.abs(b).max() for b in broken.betas) < 10 * max(np.abs(b).max() for b in clean.betas)


def test_normal_equations_leave_directions_the_data_cannot_estimate_at_zero():
    from bids_recon.glm.estimators.stages.ols import solve_normal

    x = np.random.default_rng(0).normal(size=(50, 4))
    x[:, 3] = x[:, 0] + x[:, 1]  # not estimable apart
    solution = solve_normal(x.T @ x, x.T @ (x[:, :1] * 2.0))
    assert np.abs(solution).max() < 3 and np.allclose((x @ solution).ravel(), 2 * x[:, 0], atol=1e-6)


def test_fractional_ridge_matches_fracridge():
    fracridge = pytest.importorskip("fracridge")
    rng = np.random.default_rng(0)
    design = rng.normal(size=(120, 30))
    design[:, 1] = design[:, 0] + 0.1 * rng.normal(size=120)  # collinear columns, as overlapping trials are
    data = rng.normal(size=(120, 50)).astype(np.float32)
    ours = FractionalRidge(design, data, n_alphas=400)
    theirs, _ = fracridge.fracridge(design, data.astype(np.float64), fracs=np.array([0.3, 0.7]))
    for k, fraction in enumerate((0.3, 0.7)):
        np.testing.assert_allclose(ours.betas(fraction), theirs[:, k, :], rtol=0.05, atol=0.02)
    ols = np.linalg.lstsq(design, data, rcond=None)[0]
    np.testing.assert_allclose(ours.betas(1.0), ols, rtol=1e-3, atol=1e-3)


def test_lss_matches_one_glm_per_trial():
    rng = np.random.default_rng(1)
    design = np.abs(rng.normal(size=(100, 12)))
    data = rng.normal(size=(100, 7)).astype(np.float32)
    fast = lss_betas(design, data)
    for trial in range(12):
        pair = np.column_stack([design[:, trial], design.sum(axis=1) - design[:, trial]])
        slow = np.linalg.lstsq(pair, data, rcond=None)[0][0]
        np.testing.assert_allclose(fast[trial], slow, rtol=1e-3, atol=1e-4)


def test_noise_ceiling_recovers_simulated_snr():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(300, 40))
    ids = np.repeat(np.arange(300), 3)
    betas = 0.5 * signal[ids] + rng.normal(size=(900, 40))
    ncsnr, nc = noise_ceiling(betas, ids, n_average=3)
    assert abs(float(np.median(ncsnr)) - 0.5) < 0.05
    expected = 100 * 0.25 / (0.25 + 1 / 3)
    assert abs(float(np.median(nc)) - expected) < 5


def test_a_new_estimator_is_one_module_with_its_card():
    """A toy estimator registered here (least squares, canonical HRF, a constant and no drift) is a choice of the
    settings and of --glm, is fitted by fit_session and gives the methods text and the references their words;
    nothing outside its module is edited."""
    import dataclasses

    from bids_recon.cli.parser import build_parser
    from bids_recon.errors import UsageError
    from bids_recon.glm import ESTIMATORS, EstimatorCard, SessionFit
    from bids_recon.glm.estimators import register
    from bids_recon.glm.hrf import canonical_library, trial_regressors
    from bids_recon.params import build
    from bids_recon.reports.citation import cited
    from bids_recon.workflows.betas import methods

    @register
    class ToyLeastSquares(EstimatorCard):
        name = "toy-ols"
        summary = "least squares with a canonical HRF and a constant, no drift"

        def methods(self, glm):
            return "toy least squares (a canonical HRF and a constant)"

        def references(self, glm):
            return ("glover1999",)

        def fit(self, runs, glm, rng, options):
            betas = []
            for run in runs:
                x = trial_regressors(canonical_library(), run.onsets, run.durations, run.frame_times)[0]
                design = np.column_stack([x, np.ones(run.n_volumes)])
                betas.append(np.linalg.lstsq(design, run.data, rcond=None)[0][:-1].astype(np.float32))
            zeros = np.zeros(run.data.shape[1], np.float32)
            return SessionFit(betas, zeros.astype(np.int16), zeros, zeros, zeros + 1, info={"Estimator": self.name})

    try:
        assert list(ESTIMATORS)[-1] == "toy-ols"  # after the built-in ones (simplest first)
        params = build(GlmParams, {"estimator": "toy-ols", "noise_selection": "cv"}, "workflow.glm")
        rng = np.random.default_rng(0)
        amplitudes, runs = [], []
        for _ in range(2):
            onsets = np.arange(20) * 6.0 + 4.0
            x = trial_regressors(canonical_library(), onsets, np.full(20, 2.0), np.arange(150) * 1.0)[0]
            amplitudes.append(rng.normal(size=(20, 5)))
            runs.append(SessionRun((x @ amplitudes[-1] + 100.0).astype(np.float32), onsets, np.full(20, 2.0),
                                   np.arange(20).astype(str), 1.0))
        fit = fit_session(runs, params)
        for betas, truth in zip(fit.betas, amplitudes, strict=True):
            np.testing.assert_allclose(betas, truth, atol=1e-3)
        # the settings an estimator does not read are not checked for it; those it reads are, before any work
        fit_session(runs, dataclasses.replace(params, noise_selection="sometimes"))
        with pytest.raises(UsageError, match="noise_selection must be one of heldout, cv, parallel, auto"):
            fit_session(runs, dataclasses.replace(params, estimator="fithrf-denoise", noise_selection="sometimes"))

        config = Config()
        config.workflow.glm = params
        config.workflow.betas_only = True
        assert "were estimated session by session for the 2 runs of task 'images' with toy least squares (a " \
               "canonical HRF and a constant), with a constant" in methods(config, 2, "images")
        keys = [ref.key for ref in cited(config)]
        assert "glover1999" in keys and not {"mumford2012", "prince2022", "horn1965"} & set(keys)
        help_text = " ".join(build_parser().format_help().split())
        assert "toy-ols (least squares with a canonical HRF and a constant, no drift)" in help_text
        for card in ESTIMATORS.values():  # every card's settings are settings
            assert set(card.settings) <= {f.name for f in dataclasses.fields(GlmParams)}, card.name
    finally:
        ESTIMATORS.pop("toy-ols")
    with pytest.raises(UsageError, match="unknown estimator 'toy-ols'"):
        fit_session(runs, params)
    with pytest.raises(UsageError, match="workflow.glm.estimator"):
        build(GlmParams, {"estimator": "toy-ols"}, "workflow.glm")
