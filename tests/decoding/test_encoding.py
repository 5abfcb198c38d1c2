"""Voxelwise encoding models on simulated voxels whose driving feature space is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bids_recon.decoding import average_repeats
from bids_recon.decoding.encoding import fdr_bh, fit_encoding_models, roi_summary, stimulus_betas
from bids_recon.errors import BadDataError, UsageError

ALPHAS = np.logspace(-2, 4, 13)


@pytest.fixture(scope="module")
def voxels():
    """Two feature spaces (a: 30-d, like z; b: 200-d, like c); a third of the voxels follow a, a third b, a third
    nothing. Betas are repeat-averaged per stimulus; 400 training, 120 test stimuli."""
    rng = np.random.default_rng(0)
    n_train, n_test, n_voxels = 400, 120, 600
    spaces = {"a": rng.standard_normal((n_train + n_test, 30)), "b": rng.standard_normal((n_train + n_test, 200))}
    truth = np.repeat(["a", "b", "none"], n_voxels // 3)
    betas = rng.standard_normal((n_train + n_test, n_voxels))
    for name, features in spaces.items():
        driven = truth == name
        weights = rng.standard_normal((features.shape[1], driven.sum())) / np.sqrt(features.shape[1])
        betas[:, driven] += 0.6 * features @ weights
    train = {k: v[:n_train] for k, v in spaces.items()}
    test = {k: v[n_train:] for k, v in spaces.items()}
    maps = fit_encoding_models(train, betas[:n_train], test, betas[n_train:], ALPHAS, block_voxels=128)
    return {"maps": maps, "truth": truth, "train": train, "test": test, "betas": betas, "n_train": n_train}


def test_each_space_predicts_the_voxels_it_drives(voxels):
    maps, truth = voxels["maps"], voxels["truth"]
    assert maps.models == ["a", "b", "a+b"] and maps.r.shape == (3, 600) and maps.joint == "a+b"
    for space in ("a", "b"):
        r = maps.r[maps.row(space)]
        assert np.median(r[truth == space]) > 0.25, (space, np.median(r[truth == space]))
        for other in {"a", "b", "none"} - {space}:  # at chance elsewhere: r of 120 stimuli, sd ~0.09
            assert abs(np.median(r[truth == other])) < 0.03, (space, other, np.median(r[truth == other]))
            assert np.percentile(np.abs(r[truth == other]), 95) < 0.25


def test_fdr_controls_false_positives(voxels):
    maps, truth = voxels["maps"], voxels["truth"]
    for model in maps.models:
        k = maps.row(model)
        drivers = {"a": {"a"}, "b": {"b"}, "a+b": {"a", "b"}}[model]
        discovered = maps.q[k] < 0.05
        false = discovered & ~np.isin(truth, list(drivers))
        assert discovered[np.isin(truth, list(drivers))].mean() > 0.5, model  # power
        assert false.sum() <= max(2, 0.1 * discovered.sum()), (model, false.sum(), discovered.sum())
        null_p = maps.p[k, truth == "none"]
        assert 0.3 < np.median(null_p) < 0.7  # uniform p on null voxels


def test_unique_variance_where_one_space_drives(voxels):
    maps, truth = voxels["maps"], voxels["truth"]
    for space, other in (("a", "b"), ("b", "a")):
        own = maps.unique[space][truth == space]
        assert np.median(own) > 0.02, (space, np.median(own))
        assert np.median(own) > 0.5 * np.median(maps.r2[maps.row(space), truth == space])
        assert abs(np.median(maps.unique[space][truth == other])) < 0.01
        assert abs(np.median(maps.unique[space][truth == "none"])) < 0.01
    assert abs(np.median(maps.shared[truth == "none"])) < 0.01
    assert len(maps.info["JointMixesChosen"]["a+b"]) == 3  # equal weights, a dominant, b dominant
    table = roi_summary(maps, {k: truth == k for k in ("a", "b", "none")})
    assert set(table.columns) >= {"roi", "model", "voxels", "median_r", "fraction_significant",
                                  "mean_unique_variance"}
    best = table.loc[table.groupby("roi")["median_r"].idxmax()].set_index("roi")["model"]
    assert best["a"] in ("a", "a+b") and best["b"] in ("b", "a+b")


def test_permutation_null_is_seeded_and_agrees_with_the_analytic_one(voxels):
    v = voxels
    subset = np.r_[0:40, 200:240, 400:440]
    args = (v["train"], v["betas"][: v["n_train"], subset], v["test"], v["betas"][v["n_train"]:, subset], ALPHAS)
    first = fit_encoding_models(*args, joint=(), null="permutation", n_permutations=300, seed=1)
    again = fit_encoding_models(*args, joint=(), null="permutation", n_permutations=300, seed=1)
    other = fit_encoding_models(*args, joint=(), null="permutation", n_permutations=300, seed=2)
    np.testing.assert_array_equal(first.p, again.p)
    assert not np.array_equal(first.p, other.p)
    assert first.models == ["a", "b"] and first.joint is None and first.unique == {}
    analytic = v["maps"].p[:2, subset]
    assert np.corrcoef(first.p.ravel(), analytic.ravel())[0, 1] > 0.95
    assert first.p.min() >= 1 / 301


def test_fdr_bh_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan, 0.5])
    # sorted: .005 .01 .03 .04 .5 (m = 5) -> .025 .025 .05 .05 .5
    np.testing.assert_allclose(fdr_bh(p), [0.025, 0.05, 0.05, 0.025, np.nan, 0.5])
    assert np.isnan(fdr_bh(np.array([np.nan]))).all()


def test_stimulus_betas_by_blocks(tmp_path):
    rng = np.random.default_rng(1)
    trials = pd.DataFrame({"stim_id": [f"s{i % 7}" for i in range(30)],
                           "split": ["test" if i % 7 < 2 else "train" for i in range(30)]})
    betas = rng.standard_normal((30, 23)).astype(np.float32)
    np.save(tmp_path / "b.npy", betas)
    mapped = np.load(tmp_path / "b.npy", mmap_mode="r")
    ids, blocked = stimulus_betas(mapped, trials, "train", voxel_indices=np.arange(3, 20), block_voxels=4)
    rows = (trials["split"] == "train").to_numpy()
    whole, whole_ids, _ = average_repeats(betas[rows][:, 3:20], trials["stim_id"].to_numpy()[rows])
    np.testing.assert_array_equal(ids, whole_ids)
    np.testing.assert_allclose(blocked, whole, rtol=1e-6)
    out = np.lib.format.open_memmap(tmp_path / "test.npy", "w+", np.float32, (2, 23))
    test_ids, written = stimulus_betas(mapped, trials, "test", out=out)
    assert list(test_ids) == ["s0", "s1"] and written is out


def test_encoding_input_checks(voxels):
    v = voxels
    train_betas, test_betas = v["betas"][: v["n_train"]], v["betas"][v["n_train"]:]
    with pytest.raises(UsageError, match="differ"):
        fit_encoding_models(v["train"], train_betas, {"a": v["test"]["a"]}, test_betas, ALPHAS)
    with pytest.raises(BadDataError, match="rows"):
        fit_encoding_models(v["train"], train_betas[:-1], v["test"], test_betas, ALPHAS)
    with pytest.raises(UsageError, match="joint"):
        fit_encoding_models(v["train"], train_betas, v["test"], test_betas, ALPHAS, joint=("a", "z"))
    with pytest.raises(UsageError, match="null"):
        fit_encoding_models(v["train"], train_betas, v["test"], test_betas, ALPHAS, null="bootstrap")
