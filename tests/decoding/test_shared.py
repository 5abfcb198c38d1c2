"""Decoders shared across subjects (bids_recon.decoding.shared) on a linear model with known ground truth.

Each subject's responses are ``common @ W_s`` (subject-specific weights and voxel counts) plus noise; the features
are a linear function of the common space. The shared space must recover the common subspace and must let a
subject with one session be decoded better than its own one-session decoders.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bids_recon.decoding.params import DecodingParams, SharedSpaceParams
from bids_recon.decoding.shared import (
    SubjectData,
    alignment_stimuli,
    fit_shared_space,
    shared_space_decode,
    subject_decode,
)
from bids_recon.errors import BadDataError, ExitCode
from bids_recon.evaluate.metrics import two_way_identification

N_COMMON, N_SHARED, N_TEST, N_UNIQUE, N_SESSIONS = 12, 120, 30, 240, 6


def _world(seed: int = 0, noise: float = 1.5, feature_noise: float = 0.1, n_features: int = 20):
    rng = np.random.default_rng(seed)
    n_subjects = 4
    n_stim = N_SHARED + n_subjects * N_UNIQUE
    common = rng.standard_normal((n_stim, N_COMMON))
    features = (common @ rng.standard_normal((N_COMMON, n_features))
                + feature_noise * np.sqrt(N_COMMON) * rng.standard_normal((n_stim, n_features)))
    stim_ids = np.array([f"s{i:04d}" for i in range(n_stim)])
    subjects = []
    for s in range(n_subjects):
        n_vox = 150 + 40 * s
        weights = rng.standard_normal((N_COMMON, n_vox))
        own = np.r_[np.arange(N_SHARED), N_SHARED + s * N_UNIQUE + np.arange(N_UNIQUE)]
        shown = np.repeat(own, 2)
        rng.shuffle(shown)
        session = np.arange(len(shown)) * N_SESSIONS // len(shown)
        betas = common[shown] @ weights + noise * rng.standard_normal((len(shown), n_vox)) * np.sqrt(N_COMMON)
        betas = (betas - betas.mean(0)) / betas.std(0)
        trials = pd.DataFrame({"stim_id": stim_ids[shown], "session": [f"{v + 1:02d}" for v in session],
                               "split": np.where(shown < N_TEST, "test", "train")})
        subjects.append(SubjectData(f"{s + 1:02d}", betas.astype(np.float32), trials))
    return subjects, stim_ids, features.astype(np.float32), common


def _identification(decoded) -> float:
    return float(two_way_identification(decoded.decoded, decoded.true).mean())


@pytest.mark.parametrize("method", ["ridge", "srm"])
def test_template_spans_the_common_space(method):
    subjects, stim_ids, _, common = _world(noise=0.0)
    space = fit_shared_space(subjects[:3], SharedSpaceParams(method=method, n_components=N_COMMON))
    rows = np.searchsorted(stim_ids, space.align_ids)
    assert len(space.align_ids) == N_SHARED - N_TEST  # shared training stimuli only: no test stimulus aligns
    # canonical correlations between the template and the true common space: all ~1 without noise
    q1, _ = np.linalg.qr(space.template - space.template.mean(0))
    q2, _ = np.linalg.qr(common[rows] - common[rows].mean(0))
    assert np.linalg.svd(q1.T @ q2, compute_uv=False).min() > 0.99


def test_one_session_in_the_shared_space_beats_the_subjects_own_decoders():
    # features only partly predictable from the brain (as deep features are): one session's own decoders lose much
    subjects, stim_ids, features, _ = _world(seed=1, noise=3.0, feature_noise=2.0, n_features=100)
    new, references = subjects[0], subjects[1:]
    decoding = DecodingParams()
    own_one = _identification(subject_decode(new, stim_ids, features, decoding, train_sessions=1))
    own_all = _identification(subject_decode(new, stim_ids, features, decoding))
    results = {}
    for method in ("ridge", "srm"):
        decoded, space, _ = shared_space_decode(references, new, stim_ids, features,
                                                SharedSpaceParams(method=method, n_components=N_COMMON),
                                                decoding, train_sessions=1)
        assert space.info["NewSubjects"]["01"]["AlignmentStimuli"] < N_SHARED - N_TEST  # one session's share
        assert space.info["NewSubjects"]["01"]["MapTrials"] == (new.first_sessions(1).trials["split"] == "train").sum()
        results[method] = _identification(decoded)
    assert own_one < own_all
    for method, score in results.items():
        assert score > own_one + 0.06, (method, score, own_one)
        assert score > 0.9 * own_all, (method, score, own_all)


def test_too_few_shared_stimuli_is_an_error_naming_the_subjects():
    subjects, stim_ids, features, _ = _world()
    few = [SubjectData(d.subject, d.betas, d.trials.assign(
        split=np.where(d.trials["stim_id"].isin(stim_ids[:N_SHARED - 5]), "test", d.trials["split"])))
        for d in subjects]
    assert len(alignment_stimuli(few[1:])) == 5
    with pytest.raises(BadDataError, match="sub-02, sub-03, sub-04 share 5 training stimuli") as error:
        fit_shared_space(few[1:])
    assert error.value.exit_code == ExitCode.BAD_DATA


def test_nsd_like_data_whose_shared_images_are_all_test_align_on_a_part_of_them():
    from bids_recon.group.shared import move_test_to_alignment

    subjects, stim_ids, _, _ = _world()
    shared_all_test = [SubjectData(d.subject, d.betas, d.trials.assign(
        split=np.where(d.trials["stim_id"].isin(stim_ids[:N_SHARED]), "test", "train"))) for d in subjects]
    assert len(alignment_stimuli(shared_all_test)) == 0
    moved = move_test_to_alignment(shared_all_test, 0.5, seed=0)
    aligned = alignment_stimuli(moved)
    assert len(aligned) == N_SHARED // 2 and set(aligned) <= set(stim_ids[:N_SHARED])
    left = [set(d.stim_ids[d.rows("test")]) for d in moved]
    assert all(test == left[0] for test in left) and not left[0] & set(aligned)  # one test set, never aligned
    assert len(fit_shared_space(moved[1:], SharedSpaceParams(method="srm", n_components=N_COMMON)).align_ids) == 60


def test_the_group_level_needs_three_participants(tmp_path):
    from bids_recon.config import Config
    from bids_recon.errors import EmptySelectionError
    from bids_recon.group.shared import run_shared_space

    with pytest.raises(EmptySelectionError, match="needs 3 participants") as error:
        run_shared_space(Config(), tmp_path, ["01", "02"])  # two cannot align a third
    assert error.value.exit_code == ExitCode.EMPTY_SELECTION
