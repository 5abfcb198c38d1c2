"""Domain functions against the simulator's ground truth, and their input checks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_recon.bids.layout import collect_inputs
from bids_recon.config import Config
from bids_recon.decoding import train_and_decode
from bids_recon.decoding.params import DecodingParams
from bids_recon.design import load_events
from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.evaluate import two_way_identification
from bids_recon.features import image_targets, resolver_for
from bids_recon.glm import GlmParams, RunFiles, combine_runs, estimate_session_betas, intersect_masks
from bids_recon.sim import load_truth


@pytest.fixture(scope="module")
def subject_betas(tiny_dataset):
    """LSA betas of sub-01 of the tiny dataset, with the truth on the same voxels."""
    inputs = collect_inputs(tiny_dataset.bids_dir, tiny_dataset.fmriprep_dir)["01"]
    mask_img = intersect_masks([r.brain_mask for r in inputs.runs])
    cfg = Config().workflow
    files = [RunFiles(r.preproc_bold, r.events, r.confounds, r.repetition_time, r.subject, r.session, r.run)
             for r in inputs.runs]
    session = estimate_session_betas(files, mask_img, GlmParams(estimator="lsa", confounds=list(cfg.glm.confounds)))
    raw = np.concatenate(session.betas)
    zscored, trials = combine_runs(session.betas, session.trials)
    truth = load_truth(tiny_dataset.truth_dir, "01")
    # put the truth (over the simulator's mask voxels) on our mask's voxels
    ours = np.asarray(mask_img.dataobj) > 0
    position = np.full(truth["mask"].shape, -1)
    position[truth["mask"]] = np.arange(int(truth["mask"].sum()))
    columns = position[ours]
    assert (columns >= 0).all()
    return {"raw": raw, "z": zscored, "trials": trials, "truth": truth, "columns": columns, "mask": mask_img,
            "inputs": inputs}


def test_betas_recover_true_amplitudes(subject_betas):
    truth, columns = subject_betas["truth"], subject_betas["columns"]
    amplitudes = truth["amplitudes"][:, columns]
    signal = truth["signal"][columns]
    raw = subject_betas["raw"]
    r = [np.corrcoef(raw[:, v], amplitudes[:, v])[0, 1] for v in np.flatnonzero(signal)]
    assert np.median(r) > 0.3, np.median(r)
    # units: percent signal change, so the slope against the truth is near 1 in signal voxels
    slope = np.median([np.polyfit(amplitudes[:, v], raw[:, v], 1)[0] for v in np.flatnonzero(signal)[:200]])
    assert 0.5 < slope < 1.5, slope


def test_trial_table_aligned_with_truth(subject_betas):
    trials, truth_trials = subject_betas["trials"], subject_betas["truth"]["trials"]
    assert len(trials) == len(truth_trials)
    np.testing.assert_allclose(trials["onset"], truth_trials["onset"].astype(float))
    assert (trials["stim_id"].to_numpy() == truth_trials["stim_file"].to_numpy()).all()
    assert set(trials.loc[trials["split"] == "test", "stim_id"]) == set(
        truth_trials.loc[truth_trials["split"] == "test", "stim_file"])


def test_zscored_per_session(subject_betas):
    z, sessions = subject_betas["z"], subject_betas["trials"]["session"].to_numpy()
    for session in np.unique(sessions):
        block = z[sessions == session]
        np.testing.assert_allclose(block.mean(axis=0), 0, atol=1e-4)


def test_decoder_identifies_test_stimuli(subject_betas, tiny_dataset):
    trials = subject_betas["trials"]
    resolver = resolver_for(tiny_dataset.bids_dir)
    basis, stim_ids, coefficients = image_targets(resolver, trials, 32, 32)
    import os

    from bids_recon.rois import atlas_rois

    os.environ["TEMPLATEFLOW_HOME"] = str(tiny_dataset.templateflow_dir)
    rois, _ = atlas_rois(subject_betas["mask"], Config().workflow.rois.labels)
    brain = np.asarray(subject_betas["mask"].dataobj) > 0
    voxels = np.flatnonzero(rois["earlyvisual"][brain])
    decoder, decoded = train_and_decode(subject_betas["z"], trials, voxels, stim_ids, coefficients, DecodingParams())
    assert decoded.decoded.shape == (trials.loc[trials.split == "test", "stim_id"].nunique(), basis.n_components)
    assert (decoded.n_trials >= 2).all()
    assert two_way_identification(decoded.decoded, decoded.true).mean() > 0.8
    assert decoder.cv_scores.max() > 0.3  # the first image components decode on held-out training trials
    # a decoder from voxels without signal is at chance
    rng = np.random.default_rng(0)
    _, noise = train_and_decode(rng.normal(size=subject_betas["z"].shape).astype(np.float32), trials, voxels,
                                stim_ids, coefficients, DecodingParams())
    assert two_way_identification(noise.decoded, noise.true).mean() < 0.75


def test_events_checks(tmp_path):
    path = tmp_path / "events.tsv"
    pd.DataFrame({"onset": [0, 4], "stim_file": ["a.png", "b.png"]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(BadDataError, match="duration"):
        load_events(path)
    pd.DataFrame({"onset": [0, "x"], "duration": [3, 3]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(BadDataError, match="line 3"):
        load_events(path)
    pd.DataFrame({"onset": [0, 100], "duration": [3, 3]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(BadDataError, match="ends after the run"):
        load_events(path, n_volumes=50, repetition_time=1.5)
    with pytest.raises(MissingInputError):
        load_events(tmp_path / "missing.tsv")


def test_stimulus_resolver_refuses_escapes(tiny_dataset, tmp_path):
    resolver = resolver_for(tiny_dataset.bids_dir)
    first = sorted((tiny_dataset.bids_dir / "stimuli").glob("*.png"))[0].name
    assert resolver.load_image(first, 16).shape == (16, 16, 3)
    for bad in ("../dataset_description.json", "/etc/passwd"):
        with pytest.raises(BadDataError):
            resolver.path(bad)
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"")
    link = tiny_dataset.bids_dir / "stimuli" / "link.png"
    link.symlink_to(outside)
    try:
        with pytest.raises(BadDataError, match="outside the dataset"):
            resolver.path("link.png")
    finally:
        link.unlink()
    with pytest.raises(MissingInputError):
        resolver.path("nope.png")


def test_mask_grid_mismatch(tmp_path, tiny_dataset):
    inputs = collect_inputs(tiny_dataset.bids_dir, tiny_dataset.fmriprep_dir)["01"]
    img = nib.load(inputs.runs[0].brain_mask)
    other = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.uint8), img.affine), other)
    with pytest.raises(BadDataError, match="grid differs"):
        intersect_masks([inputs.runs[0].brain_mask, other])


def _events_with_set(n_once: int = 12) -> pd.DataFrame:
    """A run: 12 images shown once, then a, b, c shown twice; a 'set' column marks a and b (and x01) as test."""
    stims = [f"x{i:02d}.png" for i in range(n_once)] + ["a.png", "b.png", "c.png"] * 2
    marks = ["test" if s in ("a.png", "b.png", "x01.png") else "train" for s in stims]
    return pd.DataFrame({"onset": np.arange(len(stims)) * 4.0, "duration": 1.0, "stim_file": stims, "set": marks})


def test_test_split_from_an_events_column():
    from bids_recon.design import apply_test_split, assign_repeats_and_split, parse_test_split, run_trials
    from bids_recon.features.params import StimulusParams

    files = StimulusParams()  # the files resolver's stim_file column
    assert parse_test_split("") is None
    assert parse_test_split("trial_type=test, catch") == ("trial_type", ["test", "catch"])
    for bad in ("trial_type", "=test", "trial_type="):
        with pytest.raises(Exception, match="COLUMN=VALUE"):
            parse_test_split(bad)
    events = _events_with_set()
    by_repeats = assign_repeats_and_split(run_trials(events, "01", None, "01", files), test_min_repeats=2)
    assert set(by_repeats.loc[by_repeats["split"] == "test", "stim_id"]) == {"a.png", "b.png", "c.png"}
    plain = run_trials(events, "01", None, "01", files)  # as the GLM stage writes it: the split is decided later
    marked = assign_repeats_and_split(apply_test_split(plain, events, files, "set=test"), 2,
                                      split_from_events=True)
    assert set(marked.loc[marked["split"] == "test", "stim_id"]) == {"a.png", "b.png", "x01.png"}
    assert list(marked["repeat"]) == list(by_repeats["repeat"])
    numeric = events.assign(shared=np.where(events["set"] == "test", 1, 0))  # NSD-like 0/1 column, 1 == "1.0"
    by_number = run_trials(numeric, "01", None, "01", files, test_split="shared=1.0")
    assert by_number["split"].tolist() == marked["split"].tolist()


def test_test_split_refuses_leaks_and_missing_columns():
    from bids_recon.design import assign_repeats_and_split, run_trials
    from bids_recon.features.params import StimulusParams

    files = StimulusParams()
    events = _events_with_set()
    events.loc[events["stim_file"] == "c.png", "set"] = ["test", "train"]  # c in both sets
    with pytest.raises(BadDataError, match="test in some presentations and train in others.*c.png"):
        assign_repeats_and_split(run_trials(events, "01", None, "01", files, test_split="set=test"),
                                 split_from_events=True)
    with pytest.raises(BadDataError, match="no 'trial_type' column for --test-split"):
        run_trials(events, "01", None, "01", files, test_split="trial_type=test")
    with pytest.raises(BadDataError, match="0 stimuli are marked test by --test-split"):
        assign_repeats_and_split(run_trials(events, "01", None, "01", files, test_split="set=nothing"),
                                 split_from_events=True)


def test_combine_and_noise_ceiling_by_blocks_equal_the_whole(subject_betas, tmp_path):
    """Memory stays flat: runs are read as memory maps and z-scored a few voxels at a time into a .npy on disk,
    the noise ceiling is computed by blocks, the decoder reads the ROI's columns only; results are unchanged."""
    from bids_recon.glm import noise_ceiling

    session_betas = [np.ascontiguousarray(b) for b in np.split(subject_betas["raw"], [36])]  # the two runs
    trials = [t.drop(columns=["repeat", "split"]).assign(repeat=0, split="train")
              for _, t in subject_betas["trials"].groupby("run", sort=True)]
    files = []
    for k, b in enumerate(session_betas):
        np.save(tmp_path / f"run{k}.npy", b)
        files.append(np.load(tmp_path / f"run{k}.npy", mmap_mode="r"))
    whole, table = combine_runs(session_betas, trials)
    n_voxels = whole.shape[1]
    blocked, blocked_table = combine_runs(files, trials, out_file=tmp_path / "z.npy", block_bytes=4 * len(whole) * 7)
    assert isinstance(blocked, np.memmap) and blocked.shape == whole.shape and n_voxels > 7 * 10  # many blocks
    np.testing.assert_array_equal(np.asarray(blocked), whole)
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), whole)
    pd.testing.assert_frame_equal(blocked_table, table)
    stim_ids = table["stim_id"].to_numpy(str)
    for a, b in zip(noise_ceiling(whole, stim_ids, 3, block_voxels=n_voxels),
                    noise_ceiling(blocked, stim_ids, 3, block_voxels=13), strict=True):
        np.testing.assert_array_equal(a, b)
    columns = np.flatnonzero(subject_betas["truth"]["signal"][subject_betas["columns"]])[:50]
    features = np.random.default_rng(0).standard_normal((table["stim_id"].nunique(), 4))
    ids = np.unique(stim_ids)
    two_alphas = DecodingParams(alphas=[1.0, 100.0], cv_folds=3)
    in_memory = train_and_decode(whole, table, columns, ids, features, two_alphas)
    mapped = train_and_decode(blocked, table, columns, ids, features, two_alphas)
    np.testing.assert_array_equal(in_memory[1].decoded, mapped[1].decoded)
    np.testing.assert_array_equal(mapped[0].voxel_indices, columns)  # saved as whole-brain columns
