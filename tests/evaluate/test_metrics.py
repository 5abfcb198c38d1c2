"""Metrics behave as the field defines them."""

import numpy as np
import pytest

from bids_recon.evaluate import evaluate_reconstructions, pixcorr, ssim, two_way_identification


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (6, 16, 16, 3)).astype(np.float32)


def test_identification_perfect_and_reversed():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(20, 50))
    assert two_way_identification(truth, truth).mean() == 1.0
    # anti-correlated predictions: the own item is always the worst match
    assert two_way_identification(-truth, truth).mean() == 0.0
    # each prediction is the previous item's truth: it loses exactly that one comparison, the rest is chance
    shifted = two_way_identification(np.roll(truth, 1, axis=0), truth)
    assert shifted.max() <= 18 / 19


def test_identification_chance_on_noise():
    rng = np.random.default_rng(2)
    scores = [two_way_identification(rng.normal(size=(30, 40)), rng.normal(size=(30, 40))).mean() for _ in range(30)]
    assert abs(np.mean(scores) - 0.5) < 0.05


def test_identification_counts_pairs_exactly():
    truth = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    pred = np.array([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [0.0, 0.0, 1.0]])
    # item 1's prediction looks like item 0: it loses against item 0, beats item 2
    np.testing.assert_allclose(two_way_identification(pred, truth), [1.0, 0.5, 1.0])


def test_pixcorr_and_ssim_identity(images):
    np.testing.assert_allclose(pixcorr(images, images, size=32), 1.0, atol=1e-6)
    np.testing.assert_allclose(ssim(images, images, size=32), 1.0, atol=1e-6)
    assert ssim(images, images[::-1], size=32).mean() < 0.5


def test_evaluate_table_has_chance_levels(images):
    noisy = np.clip(images + 0.05 * np.random.default_rng(3).normal(size=images.shape), 0, 1)
    summary, per_item = evaluate_reconstructions(noisy, images, images.reshape(6, -1), images.reshape(6, -1))
    metrics = summary.set_index("metric")
    assert metrics.loc["identification_pixels", "value"] == 1.0
    assert metrics.loc["identification_pixels", "chance"] == 0.5
    assert metrics.loc["pixcorr", "value"] > 0.9 > metrics.loc["pixcorr", "chance"]
    assert len(per_item) == 6
