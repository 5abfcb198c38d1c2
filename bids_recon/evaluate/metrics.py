"""Reconstruction metrics as the field defines them (MindEye / Brain-Diffuser conventions), on arrays.

The one implementation of each pixel-level metric, used by :mod:`bids_recon.evaluate.standard` (the published
table) and by :func:`evaluate_reconstructions` alike:

- PixCorr: Pearson r between the flattened RGB images (channel by channel, as the reference code flattens its
  ``(n, 3, H, W)`` tensors) at :data:`EVAL_SIZE` px.
- SSIM: scikit-image SSIM on greyscale images at :data:`EVAL_SIZE` px, Gaussian weights (sigma 1.5).
- 2-way identification: for each reconstruction i, the fraction of the other N-1 ground-truth items j
  for which corr(recon_i, truth_i) > corr(recon_i, truth_j); averaged over i. Chance is 50%.

Resizing is bilinear without antialiasing, as ``torchvision.transforms.Resize`` did on tensors in the
torchvision releases the reference code ran (0.15, 0.16). The network metrics of the published table (AlexNet,
InceptionV3, CLIP, EffNet-B1, SwAV, retrieval) are in :mod:`bids_recon.evaluate.standard`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: Image size (pixels) at which PixCorr and SSIM are computed, as in the field's code (NSD's stimuli are 425 px):
#: the default of ``[workflow.evaluate] image_size``, the standard metrics' and the published tables' size.
EVAL_SIZE = 425


def resize_batch(batch: Any, size: int, antialias: bool = False) -> Any:
    """Bilinear resize of an ``(n, 3, H, W)`` tensor to ``(n, 3, size, size)`` (``transforms.Resize``)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    if tuple(batch.shape[-2:]) == (size, size):
        return batch
    return tvf.resize(batch, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=antialias)


def resize_images(images: np.ndarray, size: int | None = EVAL_SIZE) -> np.ndarray:
    """Resize ``(n, H, W, 3)`` images in [0, 1] to ``(n, size, size, 3)`` (bilinear, float32).

    Bilinear without antialiasing (``torchvision.transforms.Resize(size)`` on tensors in torchvision 0.15/0.16,
    which MindEye's evaluation used). ``size=None`` returns the images unchanged (already at the evaluation size).
    """
    images = np.asarray(images, dtype=np.float32)
    if size is None or images.shape[1:3] == (size, size):
        return images
    import torch

    with torch.inference_mode():
        batch = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        return resize_batch(batch, size).permute(0, 2, 3, 1).numpy()


def paired_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r ``(n,)`` between row i of ``a`` and row i of ``b`` (float64; 0 where a row is constant)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(axis=1), denom, out=np.zeros(len(a)), where=denom > 0)


def correlation_matrix(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Pearson r between every prediction row and every truth row: ``(n_pred, n_true)``."""
    a = pred - pred.mean(axis=1, keepdims=True)
    b = true - true.mean(axis=1, keepdims=True)
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def pixcorr(recon: np.ndarray, truth: np.ndarray, size: int | None = EVAL_SIZE) -> np.ndarray:
    """Per-image PixCorr ``(n,)`` of ``(n, H, W, 3)`` reconstructions against the seen images.

    The images are resized to ``size`` (``None``: used as given) and flattened channel by channel (the reference
    code's ``(n, 3, H, W)`` order), then correlated in float64.
    """
    r, t = resize_images(recon, size), resize_images(truth, size)
    return paired_correlation(r.transpose(0, 3, 1, 2).reshape(len(r), -1),
                              t.transpose(0, 3, 1, 2).reshape(len(t), -1))


def ssim(recon: np.ndarray, truth: np.ndarray, size: int | None = EVAL_SIZE) -> np.ndarray:
    """Per-image SSIM ``(n,)`` of ``(n, H, W, 3)`` images in [0, 1] resized to ``size`` (``None``: as given):
    ``skimage.color.rgb2gray``, then ``structural_similarity`` with Gaussian weights (sigma 1.5), the population
    covariance and data range 1."""
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    r, t = resize_images(recon, size), resize_images(truth, size)
    return np.array([
        structural_similarity(rgb2gray(a), rgb2gray(b), gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=1.0)
        for a, b in zip(r, t, strict=True)
    ])


def correlation_matrix_torch(pred: Any, true: Any, device: Any = "cpu", chunk: int = 16384) -> np.ndarray:
    """Pearson r ``(n_pred, n_true)`` between the rows of two ``(n, d)`` float tensors, in float64.

    The features are sent to ``device`` ``chunk`` columns at a time, so memory stays flat for AlexNet's
    184,512-d layer-2 features.
    """
    import torch

    pred = torch.as_tensor(pred).flatten(1)
    true = torch.as_tensor(true).flatten(1)
    if pred.shape[1] != true.shape[1]:
        raise ValueError(f"feature sizes differ: {pred.shape[1]} vs {true.shape[1]}")
    mean_p = pred.double().mean(dim=1).to(device)
    mean_t = true.double().mean(dim=1).to(device)
    gram = torch.zeros(len(pred), len(true), dtype=torch.float64, device=device)
    norm_p = torch.zeros(len(pred), dtype=torch.float64, device=device)
    norm_t = torch.zeros(len(true), dtype=torch.float64, device=device)
    for start in range(0, pred.shape[1], chunk):
        p = pred[:, start:start + chunk].to(device, torch.float64) - mean_p[:, None]
        t = true[:, start:start + chunk].to(device, torch.float64) - mean_t[:, None]
        gram += p @ t.T
        norm_p += (p * p).sum(dim=1)
        norm_t += (t * t).sum(dim=1)
    denom = torch.sqrt(norm_p)[:, None] * torch.sqrt(norm_t)[None, :]
    corr = torch.where(denom > 0, gram / denom.clamp_min(1e-300), torch.zeros_like(gram))
    return corr.cpu().numpy()


def same_items(truth: np.ndarray) -> np.ndarray | None:
    """``(n, n)`` boolean: pairs of distinct rows of ``truth`` that are identical (two test items showing the same
    image, e.g. NSD-Imagery's seen and imagined trials of one target); ``None`` when every row differs."""
    flat = np.ascontiguousarray(np.asarray(truth).reshape(len(truth), -1))
    keys = [row.tobytes() for row in flat]
    if len(set(keys)) == len(keys):
        return None
    codes = np.unique(np.array(keys, dtype=object), return_inverse=True)[1]
    twins = codes[:, None] == codes[None, :]
    np.fill_diagonal(twins, False)
    return twins


def identification_from_correlations(corr: np.ndarray, twins: np.ndarray | None = None) -> np.ndarray:
    """Per-item 2-way identification ``(n,)`` from ``corr[i, j] = corr(pred_i, true_j)`` (chance 0.5).

    Item i wins against j when ``corr[i, i] > corr[i, j]`` (a tie is a loss, as ``r < congruents`` in the
    reference code); its score is its wins over the ``n - 1`` other items. Pairs marked in ``twins``
    (:func:`same_items`: both items show the same image) are left out: no reconstruction can tell them apart, so
    they would count as losses (the reference code assumes distinct test images).

    Raises
    ------
    BadDataError
        An item has no other item with another image to be compared with.
    """
    corr = np.asarray(corr, dtype=np.float64)
    n = len(corr)
    if n < 2 or corr.shape != (n, n):
        raise ValueError(f"2-way identification needs a square (n, n) matrix with n >= 2, got {corr.shape}")
    own = np.diag(corr)
    beats = own[:, None] > corr  # the diagonal never counts (not > itself)
    if twins is None:
        return beats.sum(axis=1) / (n - 1)
    others = n - 1 - twins.sum(axis=1)
    if (others < 1).any():
        from bids_recon.errors import BadDataError

        raise BadDataError("2-way identification needs test items showing at least 2 different images")
    return (beats & ~twins).sum(axis=1) / others


def two_way_identification(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-item 2-way identification accuracy ``(n,)`` over all pairs (chance 0.5).

    Parameters
    ----------
    pred, true : ndarray, shape (n_items, n_features)
        Row i of ``pred`` is the reconstruction (or decoded features) of item i.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    true = np.asarray(true, dtype=np.float64).reshape(len(true), -1)
    if len(pred) < 2:
        from bids_recon.errors import BadDataError

        raise BadDataError(f"2-way identification needs at least 2 test items, got {len(pred)}")
    return identification_from_correlations(correlation_matrix(pred, true), same_items(true))


def identification_metrics(
    recon: np.ndarray,
    truth: np.ndarray,
    decoded_features: np.ndarray | None = None,
    true_features: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, str]]]:
    """bids_recon's own identification metrics: in pixel space, and in the decoded feature space.

    Pixels are correlated in float64 by blocks of columns, so memory stays flat for 1,000 images of 512 px.

    Parameters
    ----------
    recon, truth : ndarray, shape (n, H, W, 3)
        Reconstructions and the seen images at the same size, in [0, 1].
    decoded_features, true_features : ndarray, shape (n, n_features), optional
        Decoded and true decoding targets.

    Returns
    -------
    per_item : dict
        ``identification_pixels`` (and ``identification_features``, ``feature_corr`` with features) -> ``(n,)``.
    chance : dict
        Metric -> ``(chance level, kind)``; the chance of ``feature_corr`` is its mean over mismatched pairs.
    """
    if len(recon) < 2:
        from bids_recon.errors import BadDataError

        raise BadDataError(f"2-way identification needs at least 2 test items, got {len(recon)}")
    import torch

    pixels = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32).reshape(len(a), -1)) for a in (recon, truth)]
    per_item = {"identification_pixels": identification_from_correlations(correlation_matrix_torch(*pixels),
                                                                          same_items(truth))}
    chance = {"identification_pixels": (0.5, "identification")}
    if decoded_features is not None and true_features is not None:
        decoded = np.asarray(decoded_features, np.float64)
        true = np.asarray(true_features, np.float64)
        per_item["identification_features"] = two_way_identification(decoded, true)
        per_item["feature_corr"] = paired_correlation(decoded, true)
        chance["identification_features"] = (0.5, "identification")
        chance["feature_corr"] = (float(np.mean(paired_correlation(decoded, np.roll(true, 1, axis=0)))), "similarity")
    return per_item, chance


def evaluate_reconstructions(
    recon: np.ndarray,
    truth: np.ndarray,
    decoded_features: np.ndarray | None = None,
    true_features: np.ndarray | None = None,
    method: str = "reconstruction",
    size: int = EVAL_SIZE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PixCorr, SSIM and 2-way identification for one set of reconstructions, on arrays.

    The pipeline computes PixCorr and SSIM as the field's code does instead
    (:func:`bids_recon.evaluate.variants.evaluate_generated`: images first resized to 256 px); this function
    resizes the images to ``size`` directly.

    Parameters
    ----------
    recon, truth : ndarray, shape (n, H, W, 3)
        Reconstructions and the seen images, in [0, 1].
    decoded_features, true_features : ndarray, shape (n, n_features), optional
        Decoded and true decoding targets, for identification in feature space.
    method : str
        The ``method`` column of the summary (the name of what made the reconstructions).
    size : int
        Size (px) at which PixCorr and SSIM are computed (the field's 425 px by default).

    Returns
    -------
    summary : pandas.DataFrame
        One row per metric: ``metric, value, chance, kind, method, n``. The chance level of a similarity
        metric is its mean over mismatched pairs (each reconstruction against the next item's truth).
    per_item : pandas.DataFrame
        One row per item with each metric's per-item value.
    """
    recon_eval, truth_eval = resize_images(recon, size), resize_images(truth, size)  # once, at the evaluation size
    per_item = {"pixcorr": pixcorr(recon_eval, truth_eval, size=None), "ssim": ssim(recon_eval, truth_eval, size=None)}
    # Chance for similarity metrics: each reconstruction against another item's image (a cyclic shift).
    shifted = np.roll(truth_eval, 1, axis=0)
    chance = {"pixcorr": (float(np.mean(pixcorr(recon_eval, shifted, size=None))), "similarity"),
              "ssim": (float(np.mean(ssim(recon_eval, shifted, size=None))), "similarity")}
    identification, identification_chance = identification_metrics(recon, truth, decoded_features, true_features)
    per_item.update(identification)
    chance.update(identification_chance)
    summary = pd.DataFrame([
        {"metric": name, "value": float(np.mean(per_item[name])), "chance": level, "kind": kind,
         "method": method, "n": len(recon)}
        for name, (level, kind) in chance.items()
    ])
    return summary, pd.DataFrame(per_item)
