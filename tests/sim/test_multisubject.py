"""The multi-subject betas simulator (:mod:`bids_recon.sim.multisubject`): design, signal and noise levels, session
effects, alignment across subjects, ``respond``, and the NSD writer read back through the ``nsd`` importer."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.io import loadmat

from bids_recon.decoding.ridge import fit_ridge_decoder, train_and_decode
from bids_recon.errors import UsageError
from bids_recon.glm import zscore_by_group
from bids_recon.glm.importers import importer_for
from bids_recon.glm.reliability import noise_ceiling
from bids_recon.sim.betas import NSD_SCALE
from bids_recon.sim.cli import main
from bids_recon.sim.multisubject import (
    MULTI_PRESETS,
    image_attributes,
    simulate_multisubject,
    subjectim,
    write_nsd_multisubject,
)

INT16_ERROR = 0.5 / NSD_SCALE + 1e-6


@pytest.fixture(scope="module")
def data():
    return simulate_multisubject("tiny", seed=0)


def _zscored(sub) -> np.ndarray:
    return zscore_by_group(sub.betas, sub.trials["session"].to_numpy())


def test_same_seed_same_data_other_seed_other_data(data):
    again = simulate_multisubject("tiny", seed=0)
    other = simulate_multisubject("tiny", seed=1)
    assert np.array_equal(again.images, data.images) and np.array_equal(again.common, data.common)
    for a, b in zip(data.subjects, again.subjects, strict=True):
        assert np.array_equal(a.betas, b.betas)
        pd.testing.assert_frame_equal(a.trials, b.trials)
    assert data.subjects[0].betas.shape != other.subjects[0].betas.shape or not np.allclose(
        data.subjects[0].betas, other.subjects[0].betas)
    assert not np.array_equal(data.stim_table["test"], other.stim_table["test"])


def test_each_subject_has_its_own_voxel_counts(data):
    lo, hi = data.preset.voxels
    counts = []
    for sub in data.subjects:
        per_roi = [int((sub.roi == r).sum()) for r in ("earlyvisual", "highervisual")]
        assert all(lo <= n <= hi for n in per_roi)
        counts.append(tuple(per_roi))
        assert sub.betas.shape == (data.preset.trials_per_subject, sum(per_roi))
        assert sub.weights.shape == (data.preset.n_common, sum(per_roi))
        assert np.array_equal(np.sort(sub.voxel_index), sub.voxel_index) and sub.mask.ravel()[sub.voxel_index].all()
        assert int(sub.mask.sum()) > sum(per_roi)  # other brain voxels too
    assert len(set(counts)) == len(counts)
    assert len({int(s.mask.sum()) for s in data.subjects}) == len(data.subjects)


def test_design_shared_unique_and_test_images_as_nsd(data):
    p = data.preset
    table = data.stim_table
    shared = set(table.loc[table["shared"], "stim_id"])
    test = set(table.loc[table["test"], "stim_id"])
    assert len(shared) == p.n_shared and len(test) == p.n_test and test <= shared
    assert (table["split"] == np.where(table["test"], "test", "train")).all()
    own_sets = []
    for sub in data.subjects:
        trials = sub.trials
        counts = trials["stim_id"].value_counts()
        assert (counts == p.n_repeats).all()  # every image n_repeats times
        assert shared <= set(counts.index)
        own = set(counts.index) - shared
        assert len(own) == p.n_unique and set(table.loc[table["owner"] == sub.subject, "stim_id"]) == own
        own_sets.append(own)
        assert (trials["split"] == np.where(trials["stim_id"].isin(test), "test", "train")).all()
        assert (trials["shared"] == trials["stim_id"].isin(shared)).all()
        # repeats of an image in different sessions; every session holds test, other shared and own trials
        assert (trials.groupby("stim_id")["session"].nunique() == p.n_repeats).all()
        for _, session in trials.groupby("session"):
            assert (session["split"] == "test").sum() >= p.n_test * p.n_repeats // p.n_sessions
            assert (session["shared"] & (session["split"] == "train")).any() and (~session["shared"]).any()
        assert sorted(trials["session"].unique()) == [f"nsd{k + 1:02d}" for k in range(p.n_sessions)]
        assert (trials.groupby(["session", "run"]).size().between(40, 80)).all()
        assert (trials["trial_index"] == trials.groupby(["session", "run"]).cumcount()).all()
    for i, a in enumerate(own_sets):
        for b in own_sets[i + 1:]:
            assert not a & b
    # NSD's masterordering: the same columns in the same order for everyone, each subject its own images
    assert all(np.array_equal(s.trials["column"], data.subjects[0].trials["column"]) for s in data.subjects)
    ims = subjectim(data)
    assert (ims[:, :p.n_shared] == ims[0, :p.n_shared]).all()


def test_realised_ncsnr_of_signal_voxels_is_the_target(data):
    for sub in data.subjects:
        ncsnr, _ = noise_ceiling(_zscored(sub), sub.trials["stim_id"].to_numpy())
        target = float(np.median(sub.ncsnr[sub.signal]))
        assert abs(target - data.preset.ncsnr_median) < 0.05
        assert abs(float(np.median(ncsnr[sub.signal])) - target) < 0.06
        assert float(np.median(ncsnr[~sub.signal])) < 0.15
        assert np.corrcoef(ncsnr[sub.signal], sub.ncsnr[sub.signal])[0, 1] > 0.5
        assert np.all(sub.ncsnr[~sub.signal] == 0)


def test_session_offsets_are_in_the_raw_betas_and_gone_after_zscoring(data):
    sub = data.subjects[0]
    sessions = sub.trials["session_index"].to_numpy() - 1
    means = np.stack([sub.betas[sessions == s].mean(0) for s in range(data.preset.n_sessions)])
    truth = sub.session_offset + sub.session_gain * sub.evoked[None, :]
    r = np.corrcoef((means - means.mean(0)).ravel(), (truth - truth.mean(0)).ravel())[0, 1]
    assert r > 0.8
    ids = sub.trials["stim_id"].to_numpy()
    raw = np.median(noise_ceiling(sub.betas, ids)[0][sub.signal])
    z = _zscored(sub)
    zs = np.median(noise_ceiling(z, ids)[0][sub.signal])
    assert raw < 0.85 * zs
    assert np.abs(np.stack([z[sessions == s].mean(0) for s in range(data.preset.n_sessions)])).max() < 1e-4
    flat = simulate_multisubject("tiny", seed=0, session_offset_sd=0.0, session_scale_sd=0.0).subjects[0]
    assert np.median(noise_ceiling(flat.betas, ids)[0][flat.signal]) > 0.9 * zs


def test_respond_gives_the_training_responses_and_answers_new_images(data):
    sub = data.subjects[1]
    same = data.respond(1, data.images, stim_table=data.stim_table)
    assert np.allclose(same, sub.response, atol=1e-4)
    assert np.allclose(sub.response, data.common @ sub.weights + sub.specific @ sub.specific_weights, atol=1e-4)
    assert np.allclose(sub.response[:, ~sub.signal], 0.0)
    # the noise-free responses are what the betas hold under noise and session effects
    rows = sub.trials["stim_id"].astype(int).to_numpy() - 1
    sessions = sub.trials["session_index"].to_numpy() - 1
    clean = (sub.evoked + sub.response[rows]) * sub.session_gain[sessions] + sub.session_offset[sessions]
    residual = (sub.betas - clean) / sub.session_gain[sessions]
    assert np.allclose(residual.std(0), sub.noise_sd, rtol=0.2)
    # new images without a table: attributes estimated from the pixels (unknown category)
    attrs = image_attributes(data.images)
    assert np.corrcoef(attrs["x"], data.stim_table["x"])[0, 1] > 0.9
    assert np.corrcoef(attrs["size"], data.stim_table["size"])[0, 1] > 0.5
    guessed = data.respond(1, data.images)
    early = np.flatnonzero((sub.roi == "earlyvisual") & sub.signal)
    assert np.median([np.corrcoef(guessed[:, v], sub.response[:, v])[0, 1] for v in early]) > 0.95
    noisy = data.respond(1, data.images[:20], np.random.default_rng(0), stim_table=data.stim_table.iloc[:20],
                         single_trial=True)
    assert noisy.shape == (20, len(sub.roi)) and not np.allclose(noisy, same[:20])
    with pytest.raises(UsageError):
        data.respond(1, data.images[:2], single_trial=True)


def test_decoding_is_above_chance_and_improves_with_sessions():
    data = simulate_multisubject("tiny", seed=0, n_test=40, n_shared=80)  # 40 test images: a steadier score
    sub = data.subjects[0]
    z = _zscored(sub)
    ids = data.stim_table["stim_id"].to_numpy()
    scores = []
    for k in (1, data.preset.n_sessions):
        keep = ((sub.trials["split"] == "test") | (sub.trials["session_index"] <= k)).to_numpy()
        _, res = train_and_decode(z[keep], sub.trials[keep].reset_index(drop=True), np.arange(z.shape[1]), ids,
                                  data.common)
        assert len(res.stim_ids) == data.preset.n_test  # every test image in either case
        c = np.corrcoef(res.decoded, res.true)[:len(res.true), len(res.true):]
        pairwise = float(((np.diag(c)[:, None] > c).sum(1) / (len(c) - 1)).mean())
        top1 = float((c.argmax(1) == np.arange(len(c))).mean())
        r = np.mean([np.corrcoef(res.decoded[:, j], res.true[:, j])[0, 1] for j in range(res.true.shape[1])])
        scores.append((pairwise, top1, r))
    assert min(scores[0][0], scores[1][0]) > 0.85  # chance 0.5
    assert min(scores[0][1], scores[1][1]) > 0.2  # chance 1/40
    assert scores[1][2] > scores[0][2] + 0.015 and scores[1][1] >= scores[0][1]


def _shared_means(sub) -> tuple[np.ndarray, np.ndarray]:
    z = _zscored(sub)
    rows = sub.trials["shared"].to_numpy()
    stims, inverse = np.unique(sub.trials["stim_id"].to_numpy()[rows], return_inverse=True)
    means = np.zeros((len(stims), z.shape[1]))
    np.add.at(means, inverse, z[rows])
    return stims, means / np.bincount(inverse)[:, None]


def test_subjects_align_through_the_shared_images_but_not_perfectly(data):
    a_ids, a = _shared_means(data.subjects[0])
    b_ids, b = _shared_means(data.subjects[1])
    assert np.array_equal(a_ids, b_ids)
    test = np.isin(a_ids, data.stim_table.loc[data.stim_table["test"], "stim_id"])
    decoder = fit_ridge_decoder(a[~test].astype(np.float32), b.astype(np.float32), np.arange(a.shape[1]),
                                target_rows=np.flatnonzero(~test))
    predicted = decoder.predict(a[test].astype(np.float32))
    c = np.corrcoef(predicted, b[test])[:test.sum(), test.sum():]
    assert float(((np.diag(c)[:, None] > c).sum(1) / (len(c) - 1)).mean()) > 0.75
    # noise-free: the common space explains about 1 - subject_specific of a signal voxel's variance
    for q, low, high in ((data.preset.subject_specific, 0.65, 0.92), (0.0, 0.99, 1.0)):
        sim = data if q else simulate_multisubject("tiny", seed=0, subject_specific=0.0)
        sub = sim.subjects[1]
        resp = sub.response[:, sub.signal]
        x = np.column_stack([np.ones(len(sim.common)), sim.common])
        fit = x @ np.linalg.lstsq(x, resp, rcond=None)[0]
        r2 = 1 - ((resp - fit) ** 2).sum(0) / ((resp - resp.mean(0)) ** 2).sum(0)
        assert low < float(np.median(r2)) <= high


def test_nsd_writer_reads_back_through_the_importer(data, tmp_path):
    root = tmp_path / "NSD"
    write_nsd_multisubject(root, data)
    info = pd.read_csv(root / "nsddata" / "experiments" / "nsd" / "nsd_stim_info_merged.csv", index_col=0)
    assert np.array_equal(info["shared1000"].to_numpy(), data.stim_table["test"].to_numpy())
    design = loadmat(root / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat")
    assert design["subjectim"].shape == (data.preset.n_subjects, data.preset.n_shared + data.preset.n_unique)
    assert np.array_equal(np.sort(design["sharedix"].ravel()).astype(int),
                          np.sort(data.stim_table.loc[data.stim_table["shared"], "stim_id"].astype(int)))
    for spec in (f"nsd={root}", f"nsd={root}:design=expdesign"):
        for sub in data.subjects:
            importer = importer_for(spec)
            plan = importer.plan(sub.subject)
            assert plan.session_labels == [f"nsd{k + 1:02d}" for k in range(data.preset.n_sessions)]
            brain = np.asarray(importer.brain_mask(plan).dataobj) > 0
            assert np.array_equal(brain, sub.mask)
            out = Path(tempfile.mkdtemp(dir=tmp_path))
            betas = np.concatenate([np.asarray(importer.read_session(plan, s, brain, out / f"{k}.npy"))
                                    for k, s in enumerate(plan.sessions)])
            trials = pd.concat([s.trials for s in plan.sessions], ignore_index=True)
            assert trials["stim_id"].tolist() == sub.trials["stim_id"].tolist()
            assert trials["session"].tolist() == sub.trials["session"].tolist()
            assert trials["run"].astype(str).tolist() == sub.trials["run"].tolist()
            columns = np.searchsorted(np.flatnonzero(brain.ravel()), sub.voxel_index)
            assert np.abs(betas[:, columns] - sub.betas).max() <= INT16_ERROR


def test_cli_writes_the_stand_in_with_its_ground_truth(tmp_path, capsys):
    out = tmp_path / "NSD"
    assert main([str(out), "--layout", "nsd", "--preset", "multisubject-tiny", "--subjects", "2", "--seed", "4"]) == 0
    assert "--dataset nsd --participant-label 01" in capsys.readouterr().out
    ppdata = out / "nsddata_betas" / "ppdata"
    assert sorted(p.name for p in ppdata.iterdir()) == ["subj01", "subj02"]
    truth = tmp_path / "NSD_groundtruth"
    expected = simulate_multisubject("tiny", seed=4, n_subjects=2)
    assert np.allclose(np.load(truth / "common.npy"), expected.common)
    saved = dict(np.load(truth / "sub-02_truth.npz"))
    assert np.array_equal(saved["weights"], expected.subjects[1].weights)
    trials = pd.read_csv(truth / "sub-02_trials.tsv", sep="\t", dtype={"stim_id": str, "run": str})
    assert trials["stim_id"].tolist() == expected.subjects[1].trials["stim_id"].tolist()
    assert main([str(tmp_path / "b"), "--preset", "multisubject-tiny"]) == 64


def test_bad_settings_are_refused():
    with pytest.raises(UsageError, match="unknown"):
        simulate_multisubject("tiny", n_voxels=3)
    with pytest.raises(UsageError, match="n_test"):
        simulate_multisubject("tiny", n_test=0)
    with pytest.raises(UsageError, match="grid"):
        simulate_multisubject("tiny", voxels=(2000, 2000))
    assert set(MULTI_PRESETS) >= {"tiny", "small"}
