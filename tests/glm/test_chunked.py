"""The fithrf estimators a chunk of voxels at a time: the same betas and choices as the whole session at once, from
memory or from ``.npy`` files (the pipeline's whole-brain path)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from bids_recon.errors import UsageError
from bids_recon.glm import GlmParams, fit_session
from bids_recon.glm.estimators import ArraySource, NpySource, fit_session_source
from bids_recon.sim.eventsim import EVENT_PRESETS, simulate_event_session


@pytest.fixture(scope="module")
def session():
    return simulate_event_session(EVENT_PRESETS["fast-2run"], seed=5, n_voxels=2400)


@pytest.mark.parametrize("estimator", ["fithrf-denoise-rr", "fithrf-denoise", "fithrf"])
def test_chunks_give_the_betas_of_the_whole_session(session, estimator, tmp_path):
    params = GlmParams(estimator=estimator)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging.getLogger("bids_recon.glm"), "disabled", True)
        whole = fit_session(session.session_runs(), params, seed=3)
        in_memory = fit_session_source(ArraySource(session.session_runs()), params, seed=3, voxels_per_chunk=700)
        runs = session.session_runs()
        files = []
        for index, run in enumerate(runs):
            files.append(tmp_path / f"run{index}.npy")
            np.save(files[-1], run.data)
        templates = [dataclasses.replace(run, data=np.zeros((run.n_volumes, 0), np.float32)) for run in runs]
        betas_out = [np.lib.format.open_memmap(tmp_path / f"betas{i}.npy", mode="w+", dtype=np.float32,
                                               shape=(len(run.onsets), run.data.shape[1]))
                     for i, run in enumerate(runs)]
        from_files = fit_session_source(NpySource(files, templates), params, seed=3, betas_out=betas_out,
                                        voxels_per_chunk=1000)
    assert from_files.betas is betas_out
    reference = np.concatenate(whole.betas)
    assert whole.n_noise_components == (5 if estimator != "fithrf" else 0)
    for fit in (in_memory, from_files):
        assert fit.n_noise_components == whole.n_noise_components
        np.testing.assert_array_equal(fit.hrf_index, whole.hrf_index)
        np.testing.assert_allclose(np.concatenate(fit.betas), reference, atol=1e-4 * np.abs(reference).max())
        np.testing.assert_allclose(fit.fractions, whole.fractions, atol=1e-5)
        np.testing.assert_allclose(fit.r2, whole.r2, atol=1e-6)
        assert fit.info["NoiseComponents"] == whole.info["NoiseComponents"]
        assert fit.info["Warnings"] == whole.info["Warnings"]
        np.testing.assert_allclose(fit.cv_noise, whole.cv_noise, atol=1e-6)


def test_cross_validated_fractions_need_the_whole_session(session):
    params = GlmParams(fraction_selection="session")
    with pytest.raises(UsageError, match="needs the whole session in memory"):
        fit_session_source(ArraySource(session.session_runs()), params, voxels_per_chunk=700)
    one_chunk = fit_session_source(ArraySource(session.session_runs()), params)  # fewer voxels than a chunk holds
    assert np.isfinite(np.concatenate(one_chunk.betas)).all()
