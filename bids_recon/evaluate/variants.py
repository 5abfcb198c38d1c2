"""Evaluation of generators that make several variants and samples per stimulus (the diffusion generator).

:func:`evaluate_variants` computes the metrics of :func:`bids_recon.evaluate.metrics.evaluate_reconstructions` for
every (variant, sample) of an index of generated images and averages them over samples; decoded-feature metrics
use :func:`standardise_features`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from bids_recon.evaluate.metrics import evaluate_reconstructions
from bids_recon.evaluate.params import EVAL_SIZE


def standardise_features(decoded: np.ndarray, true: np.ndarray, stim_ids: np.ndarray, features: np.ndarray,
                         train_ids: set[str] | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Decoded and true test features z-scored per dimension with the training stimuli's mean and sd.

    Constant dimensions are dropped. Correlating raw z or c vectors mostly measures the part every stimulus
    shares (over 99% of a random model's and much of a real model's variance), not the stimulus.

    Parameters
    ----------
    decoded, true : ndarray, shape (n_test, n_features)
        Decoded and true features of the test stimuli.
    stim_ids : ndarray of str, shape (n_stimuli,)
    features : ndarray, shape (n_stimuli, n_features)
        Every stimulus's features (the training ones give the statistics).
    train_ids : collection of str
        The training stimuli.

    Returns
    -------
    decoded, true : ndarray, shape (n_test, n_kept)
    """
    train = set(str(s) for s in train_ids)
    rows = features[np.array([str(s) in train for s in stim_ids])]
    mean, sd = rows.mean(axis=0), rows.std(axis=0)
    keep = sd > 1e-6 * max(float(sd.max(initial=0.0)), 1e-30)
    return (decoded[:, keep] - mean[keep]) / sd[keep], (true[:, keep] - mean[keep]) / sd[keep]


def evaluate_variants(
    index: pd.DataFrame,
    stimulus_order: list[str],
    load_image: Callable[[str], np.ndarray],
    load_truth: Callable[[list[str], int], np.ndarray],
    features: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    size: int = EVAL_SIZE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Metrics of every (variant, sample) of generated images, averaged over samples.

    Parameters
    ----------
    index : pandas.DataFrame
        One row per image: ``stimulus``, ``variant``, ``sample``, ``file``.
    stimulus_order : list of str
        Order of the test stimuli (the decoders' rows): images are sorted into it.
    load_image : callable
        ``file -> (H, W, 3)`` image in [0, 1].
    load_truth : callable
        ``(stimulus ids, size) -> (n, size, size, 3)`` seen images.
    features : mapping, optional
        Variant -> ``(decoded, true)`` standardised features (see :func:`standardise_features`) for the
        decoded-feature metrics of that variant.
    size : int
        Size (px) of PixCorr and SSIM.

    Returns
    -------
    metrics : pandas.DataFrame
        One row per (metric, variant): ``metric, value, chance, kind, method, n, samples`` (means over samples).
    per_item : pandas.DataFrame
        One row per (stimulus, variant, sample) with each metric's value.
    """
    features = features or {}
    order = {s: k for k, s in enumerate(stimulus_order)}
    summaries, items = [], []
    truth = None
    for (variant, sample), rows in index.groupby(["variant", "sample"], sort=False):
        rows = rows.sort_values("stimulus", key=lambda s: s.map(order))
        images = np.stack([load_image(f) for f in rows["file"]])
        if truth is None or truth.shape[1] != images.shape[1]:
            truth = load_truth(list(rows["stimulus"]), images.shape[1])
        dec_feats, true_feats = features.get(str(variant), (None, None))
        summary, per_item = evaluate_reconstructions(images, truth, dec_feats, true_feats, str(variant), size)
        summary["sample"] = sample
        summaries.append(summary)
        per_item.insert(0, "stimulus", list(rows["stimulus"]))
        per_item.insert(1, "variant", variant)
        per_item.insert(2, "sample", sample)
        items.append(per_item)
    table = pd.concat(summaries, ignore_index=True)
    metrics = (table.groupby(["method", "metric"], sort=False)
               .agg(value=("value", "mean"), chance=("chance", "mean"), kind=("kind", "first"), n=("n", "first"),
                    samples=("sample", "size"))
               .reset_index()[["metric", "value", "chance", "kind", "method", "n", "samples"]])
    return metrics, pd.concat(items, ignore_index=True)
