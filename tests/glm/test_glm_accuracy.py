"""Single-trial estimators on the independent simulation family (bids_recon.sim.eventsim): accuracy, choices,
and the diagnostics a user sees. Small instances (hundreds of voxels), so each test takes about a second."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest

from bids_recon.glm import GlmParams, default_library, fit_session
from bids_recon.glm.estimators.stages.crossval import RepeatCV
from bids_recon.glm.hrf import canonical_library, trial_regressors
from bids_recon.reports.figures import plot_glm_diagnostics
from bids_recon.sim.eventsim import EVENT_PRESETS, simulate_event_session


def _median_r(fit, truth) -> float:
    betas = np.concatenate(fit.betas)[:, truth.signal].astype(np.float64)
    amplitudes = truth.amplitudes[:, truth.signal].astype(np.float64)
    betas -= betas.mean(axis=0)
    amplitudes -= amplitudes.mean(axis=0)
    r = (betas * amplitudes).sum(axis=0) / np.sqrt((betas**2).sum(axis=0) * (amplitudes**2).sum(axis=0))
    return float(np.median(r))


def _event_peaks(duration: float) -> np.ndarray:
    """Time to peak of each default-library member's response to an event of ``duration`` s."""
    from bids_recon.glm.hrf import FINE_DT

    width = max(1, int(round(duration / FINE_DT)))
    return np.array([np.argmax(np.convolve(h, np.ones(width))) * FINE_DT for h in default_library().hrfs])


@pytest.fixture(scope="module")
def fast_design():
    """Issue 11's first design (2 runs, 3-s trials every 4.5 s, 2 repeats) with HRFs no library member fits."""
    return simulate_event_session(EVENT_PRESETS["fast-2run"], seed=3, n_voxels=800, hrf_family="glmsingle-warped")


def test_simulation_matches_what_fit_session_takes(fast_design):
    runs = fast_design.session_runs()
    truth = fast_design.truth
    assert len(runs) == 2 and all(r.data.dtype == np.float32 and r.data.shape == (200, 800) for r in runs)
    assert sum(len(r.onsets) for r in runs) == truth.amplitudes.shape[0]
    assert abs(float(np.mean(runs[0].data))) < 1e-3  # percent signal change around each voxel's mean
    amplitudes = truth.amplitudes[:, truth.signal]
    assert (amplitudes < 0).mean() > 0.1  # sign changes
    # runs are rebuilt each time: the estimators' in-place residualisation does not leak into the next fit
    fit_session(runs, GlmParams(estimator="lsa"))
    assert not np.allclose(fast_design.session_runs()[0].data, runs[0].data)
    again = simulate_event_session(EVENT_PRESETS["fast-2run"], seed=3, n_voxels=800, hrf_family="glmsingle-warped")
    np.testing.assert_array_equal(again.raw[1], fast_design.raw[1])


def test_default_beats_lss_and_lsa(fast_design):
    r = {name: _median_r(fit_session(fast_design.session_runs(), GlmParams(estimator=name)), fast_design.truth)
         for name in ("lsa", "lss", "fithrf-denoise-rr")}
    assert r["fithrf-denoise-rr"] > r["lss"] + 0.05, r
    assert r["fithrf-denoise-rr"] > r["lsa"] + 0.15, r


@pytest.mark.parametrize(("preset", "n_random_walks", "n_physio"),
                         [("fast-2run", 0, 0), ("fast-2run", 2, 1), ("fast-2run", 3, 2), ("strong-physio", 2, 4)])
def test_number_of_noise_components_is_recovered(preset, n_random_walks, n_physio):
    sim = simulate_event_session(EVENT_PRESETS[preset], seed=5, n_voxels=1500, n_random_walks=n_random_walks,
                                 n_physio=n_physio)
    fit = fit_session(sim.session_runs(), GlmParams(estimator="fithrf-denoise-rr"))
    assert abs(fit.n_noise_components - sim.truth.n_noise_components) <= 1, fit.info["NoiseParallelAnalysisPerRun"]


def test_components_that_carry_task_signal_are_dropped():
    """A task-locked response shared by every voxel (trial-to-trial varying, as arousal) is a component the parallel
    analysis finds; held-out runs' prediction gets worse without it, so the default does not project it out (and
    says so), while data with only shared noise keep their components (test above)."""
    sim = simulate_event_session(EVENT_PRESETS["fast-2run"], seed=1, n_voxels=1500, n_random_walks=0, n_physio=0)
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 1.5, sim.spec.n_voxels).astype(np.float32)
    runs = sim.session_runs()
    for run in runs:
        x = trial_regressors(canonical_library(), run.onsets, run.durations, run.frame_times)[0]
        shared = x @ (1 + 0.8 * rng.standard_normal(x.shape[1]))
        run.data += (shared[:, None] * weights[None, :]).astype(np.float32)
    copies = [dataclasses.replace(run, data=run.data.copy()) for run in runs]
    parallel = fit_session(runs, GlmParams(noise_selection="parallel"))
    checked = fit_session(copies, GlmParams())
    assert parallel.n_noise_components >= 1
    assert checked.n_noise_components < parallel.n_noise_components
    assert checked.info["NoiseComponentsDropped"] == parallel.n_noise_components - checked.n_noise_components
    gains = checked.info["CVNoiseGains"]
    assert gains[parallel.n_noise_components] < gains[checked.n_noise_components]
    assert any("did not improve the prediction of held-out runs" in w for w in checked.info["Warnings"])


def test_chosen_hrf_follows_the_true_one():
    sim = simulate_event_session(EVENT_PRESETS["fast-2run"], seed=7, n_voxels=800, hrf_family="logit", noise_sd=1.2,
                                 shared_noise_sd=1.0)
    fit = fit_session(sim.session_runs(), GlmParams(estimator="fithrf-denoise-rr"))
    signal = sim.truth.signal
    chosen = _event_peaks(sim.spec.stim_duration)[fit.hrf_index[signal]]
    assert np.corrcoef(chosen, sim.truth.hrf_peak[signal])[0, 1] > 0.5


def test_uninformative_cross_validation_is_reported(fast_design, caplog):
    """Amplitudes that do not repeat: the CV curves stay <= 0; the fit says so and what it chose instead."""
    with caplog.at_level(logging.WARNING, logger="bids_recon.glm"):
        fit = fit_session(fast_design.session_runs(), GlmParams(estimator="fithrf-denoise-rr"))
    info = fit.info
    assert len(info["CVNoiseComponents"]) == 11 and len(info["CVFractions"]) == len(info["Fractions"]) == 20
    # the noise count needs no repeats: the parallel analysis proposes it, held-out runs' time series check it where
    # the on/off model predicts them (a trial every 4.5 s: too few voxels, and the fit says so)
    assert info["NoiseSelection"] == "parallel analysis (held-out runs could not check it)"
    assert info["CVNoisePredictedVoxels"] < 20
    assert any("too few to check" in w for w in info["Warnings"])
    assert any("do not predict each other" in w for w in info["Warnings"])
    assert info["FractionSelection"] == "marginal likelihood per voxel"
    assert sum(info["HRFIndexHistogram"]) == fast_design.spec.n_voxels
    assert any("marginal likelihood" in w for w in info["Warnings"])
    assert [r.message for r in caplog.records if r.name == "bids_recon.glm"] == info["Warnings"]
    assert 0.05 < info["FractionMedianTaskVoxels"] < 1.0
    json.dumps(info)  # the beta stage writes it as the session's JSON sidecar


def test_reliable_repeats_let_cross_validation_choose():
    sim = simulate_event_session(EVENT_PRESETS["reliable-repeats"], seed=2, n_voxels=800, repeat_correlation=1.0)
    fit = fit_session(sim.session_runs(), GlmParams(estimator="fithrf-denoise-rr", noise_selection="auto"))
    reliability = fit.info["RepeatReliability"]
    assert reliability["MedianCorrelation"] > reliability["ShuffledMean"] + 3 * reliability["ShuffledSD"]
    assert fit.info["NoiseSelection"] == "cross-validation of repeated stimuli"
    assert not any("do not predict each other" in w for w in fit.info["Warnings"])
    assert abs(fit.n_noise_components - sim.truth.n_noise_components) <= 2
    assert max(fit.cv_noise) > 0 or any("only ranks the counts" in w for w in fit.info["Warnings"])
    assert _median_r(fit, sim.truth) > 0.5


def test_single_presentations_fall_back_without_cross_validation():
    sim = simulate_event_session(EVENT_PRESETS["single-presentation"], seed=1, n_voxels=600)
    fit = fit_session(sim.session_runs(), GlmParams(estimator="fithrf-denoise-rr"))
    assert fit.info["CrossValidatedTrials"] == 0 and fit.cv_fractions == []
    assert len(fit.cv_noise) == 11  # held-out runs need no repeats
    assert "too few to cross-validate" in fit.info["Warnings"][0]
    assert fit.info["NoiseSelection"].startswith("parallel analysis")
    lss = fit_session(sim.session_runs(), GlmParams(estimator="lss"))
    assert _median_r(fit, sim.truth) > _median_r(lss, sim.truth)


def test_other_selections_still_run(fast_design):
    """GLMsingle's cross-validated fraction choices (where repeats allow them) and the cosine drift stay available."""
    reliable = simulate_event_session(EVENT_PRESETS["reliable-repeats"], seed=2, n_voxels=800, repeat_correlation=1.0)
    for data, options, selection in (
            (reliable, {"fraction_selection": "voxel"}, "cross-validation per voxel"),
            (reliable, {"fraction_selection": "session", "noise_selection": "cv"}, "cross-validation, one for the "
                                                                                    "session"),
            (fast_design, {"fraction_selection": "session"}, "marginal likelihood per voxel"),  # repeats do not repeat
            (fast_design, {"drift_model": "cosine"}, "marginal likelihood per voxel")):
        fit = fit_session(data.session_runs(), GlmParams(estimator="fithrf-denoise-rr", **options))
        assert fit.info["FractionSelection"] == selection, options
        assert np.isfinite(np.concatenate(fit.betas)).all()
        assert _median_r(fit, data.truth) > 0.2, options


def test_repeat_cv_scores_a_fixed_target():
    """Predicting the session mean scores 0; a candidate equal to the truth beats a noisy one."""
    rng = np.random.default_rng(0)
    stims = [np.array([f"s{i}" for i in rng.permutation(30)]) for _ in range(3)]
    cv = RepeatCV.build(stims)
    assert len(cv) == 90 and len(cv.test) == 90 * 2
    truth = {f"s{i}": rng.normal(size=5) for i in range(30)}
    clean = np.stack([truth[s] for run in stims for s in run])
    reference = clean + rng.normal(size=clean.shape)
    scores = cv.scores(reference, [np.zeros_like(clean) + reference.mean(axis=0), clean, reference])
    np.testing.assert_allclose(scores[0], 0.0, atol=1e-6)
    assert (scores[1] > scores[2]).all() and (scores[1] > 0).all()


def test_diagnostics_figure(fast_design, tmp_path):
    fit = fit_session(fast_design.session_runs(), GlmParams(estimator="fithrf-denoise-rr"))
    out = plot_glm_diagnostics(fit.info, tmp_path / "glm.svg", title="Session 01")
    text = out.read_text()
    assert "number of noise components" in text and "ridge fraction" in text and "HRF index" in text
    empty = plot_glm_diagnostics({"Estimator": "lsa"}, tmp_path / "lsa.svg").read_text()
    assert "not run" in empty
