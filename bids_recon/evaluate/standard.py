"""The field's standard reconstruction metrics, as MindEye's and Brain-Diffuser's evaluation code computes them.

Papers on NSD are compared on one table (Brain-Diffuser, Ozcelik & VanRullen 2023; MindEye, Scotti et al. 2023;
MindEye2, Scotti et al. 2024): PixCorr, SSIM, 2-way identification in AlexNet layer 2 and 5, InceptionV3 and CLIP
ViT-L/14 space, EffNet-B1 and SwAV correlation distances, image and brain retrieval. This module reproduces
MindEye's implementation (``MedARC-AI/fMRI-reconstruction-NSD`` ``src/Reconstruction_Metrics.py`` and
``MedARC-AI/MindEyeV2`` ``src/final_evaluations.ipynb``, which compute the same numbers with the same code):

1. Reconstructions and seen images are float RGB in [0, 1], resized to 256 x 256 (``transforms.Resize((256,
   256))``). Every later resize is from these 256 px images, bilinear, without antialiasing (tensor resizing
   in the torchvision 0.15/0.16 the reference ran; ``antialias`` changes this).
2. **PixCorr**: resize to 425 px; Pearson r of the flattened RGB images; mean over items.
3. **SSIM**: resize to 425 px; ``skimage.color.rgb2gray``; ``structural_similarity(recon, truth,
   gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)`` on the 2-D greyscale images
   (the reference's ``multichannel=True`` is ignored by scikit-image >= 0.20, the versions it ran); mean.
4. **AlexNet(2)** / **AlexNet(5)**: ``alexnet`` (``IMAGENET1K_V1``) nodes ``features.4`` / ``features.11``
   (ReLU after conv2 / conv5); input 256 px, ImageNet mean/std; 2-way identification.
5. **InceptionV3**: ``inception_v3`` (``IMAGENET1K_V1``, so ``transform_input=True``), node ``avgpool``; input
   342 px, ImageNet mean/std; 2-way identification.
6. **CLIP**: CLIP ViT-L/14 (OpenAI) image embedding (``encode_image``: the projected, layer-normalised class
   token, 768-d; here ``CLIPVisionModelWithProjection.image_embeds``); input 224 px, CLIP mean/std; 2-way
   identification.
7. **EffNet-B**: ``efficientnet_b1`` (``IMAGENET1K_V2``), node ``avgpool``; input 255 px, ImageNet mean/std;
   mean correlation distance ``scipy.spatial.distance.correlation`` between paired features (lower is better).
8. **SwAV**: SwAV ResNet-50 (``swav_800ep_pretrain``), node ``avgpool``; input 224 px; mean correlation
   distance (lower is better).
9. **2-way identification** (all pairs): features flattened; ``r = corrcoef(truths, recons)``; reconstruction
   j wins against truth i when ``r[i, j] < r[j, j]``; its score is its wins over the N - 1 others; mean over j.
   Chance is 50%.
10. **Image / brain retrieval** (MindEye's ``percent_correct_fwd`` / ``percent_correct_bwd``): brain-decoded
    CLIP embeddings against the seen images' CLIP embeddings, both L2-normalised; 300 test items drawn at
    random without replacement; ``S[i, j]`` = cosine(brain_i, image_j); top-1 accuracy; mean over 30 draws.
    Chance 1/300. Draws use ``numpy.random.RandomState(seed)`` (seed 42, MindEye's seed). Which axis is which
    follows the code that produced the published numbers, not its prose: MindEye's
    ``batchwise_cosine_similarity(Z, B)`` returns ``(Z @ B.T).T``, so its "fwd" score (published as *image
    retrieval*) is, for each image j, whether ``argmax_i S[i, j] == j`` (the right brain embedding ranks first
    for the image), and "bwd" (*brain retrieval*) is, for each brain embedding i, whether ``argmax_j S[i, j]
    == i``. :func:`retrieval_top1` returns both, named by the published columns.

Brain-Diffuser (``ozcelikfu/brain-diffuser`` ``scripts/eval_extract_features.py``, ``evaluate_reconstruction.py``)
uses the same layers and the same identification and distance definitions, but feeds every network 224 px PIL
resizes of the saved PNGs and compares PixCorr/SSIM with the 425 px originals; its numbers therefore differ in
the second decimal from MindEye's convention used here.

Chance levels in the table: 0.5 for identification, 1/pool for retrieval; for PixCorr, SSIM and the
distances, the mean over mismatched pairs (each reconstruction against the next item's image), so that a value
can be read against what unrelated images give.

Network weights come from local files only (:mod:`bids_recon.evaluate.networks`); a metric whose weights are
absent is *not computed*: its row says ``status="not computed"`` with the reason (``weights not found at
<path>; run bids_recon-fetch``) and one line is logged. Nothing is raised for missing weights.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, BidsReconError, UsageError
from bids_recon.evaluate.metrics import (
    EVAL_SIZE,
    correlation_matrix_torch,
    identification_from_correlations,
    paired_correlation,
    pixcorr,
    resize_batch,
    same_items,
    ssim,
)

LOGGER = logging.getLogger("bids_recon.evaluate.standard")

#: Every image is first resized to this square size (MindEye's ``transforms.Resize((256, 256))``).
BASE_SIZE = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: OpenAI CLIP's normalisation (``clip.load``'s preprocess; MindEye's CLIP metric).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Retrieval: items per draw, number of draws and the seed of the draws (MindEye).
RETRIEVAL_POOL = 300
RETRIEVAL_DRAWS = 30
RETRIEVAL_SEED = 42

_MINDEYE = "MindEye: MedARC-AI/fMRI-reconstruction-NSD src/Reconstruction_Metrics.py (= MindEyeV2 final_evaluations)"
_MINDEYE_RETRIEVAL = "MindEye: MedARC-AI/MindEyeV2 src/final_evaluations.ipynb (fwd/bwd percent_correct)"

#: Input size and normalisation of each network (the reference's ``preprocess`` for it).
NETWORK_INPUT = {
    "alexnet": (256, IMAGENET_MEAN, IMAGENET_STD),
    "inception_v3": (342, IMAGENET_MEAN, IMAGENET_STD),
    "clip": (224, CLIP_MEAN, CLIP_STD),
    "efficientnet_b1": (255, IMAGENET_MEAN, IMAGENET_STD),
    "swav": (224, IMAGENET_MEAN, IMAGENET_STD),
}


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the published table.

    Attributes
    ----------
    id : str
        Key used in tables and in the ``metrics`` selection (``alexnet2``).
    label : str
        Column name of the published tables (``AlexNet(2)``).
    kind : str
        ``pixel``, ``identification``, ``distance`` or ``retrieval``.
    direction : str
        ``higher`` or ``lower`` is better.
    network : str or None
        Network key (:func:`bids_recon.evaluate.networks.network_specs`), None for pixel metrics.
    node : str or None
        Feature node of the network.
    definition : str
        One line: what is computed.
    """

    id: str
    label: str
    kind: str
    direction: str
    network: str | None
    node: str | None
    definition: str
    source: str = _MINDEYE

    @property
    def input_size(self) -> int:
        """Pixels of the square input the metric's network (or pixel comparison) sees."""
        if self.network is None:
            return EVAL_SIZE
        return NETWORK_INPUT[self.network][0]


METRICS: dict[str, MetricSpec] = {m.id: m for m in (
    MetricSpec("pixcorr", "PixCorr", "pixel", "higher", None, None,
               "Pearson r of flattened RGB images at 425 px, mean over items"),
    MetricSpec("ssim", "SSIM", "pixel", "higher", None, None,
               "skimage SSIM of rgb2gray images at 425 px, Gaussian sigma 1.5, data range 1, mean over items"),
    MetricSpec("alexnet2", "AlexNet(2)", "identification", "higher", "alexnet", "features.4",
               "2-way identification (all pairs) in AlexNet features.4 at 256 px"),
    MetricSpec("alexnet5", "AlexNet(5)", "identification", "higher", "alexnet", "features.11",
               "2-way identification (all pairs) in AlexNet features.11 at 256 px"),
    MetricSpec("inceptionv3", "InceptionV3", "identification", "higher", "inception_v3", "avgpool",
               "2-way identification (all pairs) in InceptionV3 avgpool at 342 px"),
    MetricSpec("clip", "CLIP", "identification", "higher", "clip", "image_embeds",
               "2-way identification (all pairs) in CLIP ViT-L/14 image-embedding space at 224 px"),
    MetricSpec("effnet", "EffNet-B", "distance", "lower", "efficientnet_b1", "avgpool",
               "mean correlation distance of EfficientNet-B1 avgpool features at 255 px"),
    MetricSpec("swav", "SwAV", "distance", "lower", "swav", "avgpool",
               "mean correlation distance of SwAV ResNet-50 avgpool features at 224 px"),
    MetricSpec("retrieval_image", "Image retrieval", "retrieval", "higher", "clip", "image_embeds",
               "MindEye's fwd top-1 among 300 (per image, its brain-decoded CLIP embedding ranks first by cosine), "
               "mean of 30 draws", _MINDEYE_RETRIEVAL),
    MetricSpec("retrieval_brain", "Brain retrieval", "retrieval", "higher", "clip", "image_embeds",
               "MindEye's bwd top-1 among 300 (per brain-decoded CLIP embedding, its image ranks first by cosine), "
               "mean of 30 draws", _MINDEYE_RETRIEVAL),
)}
#: Best-of-n selection rules (see :meth:`StandardEvaluator.evaluate_samples`).
SELECTIONS = ("mean", "brain_clip", "oracle_clip")


def select_metrics(metrics: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalise a ``metrics`` selection: None or ``"all"`` -> every metric; a comma list or an iterable of ids.

    Raises
    ------
    UsageError
        An unknown metric id (the message lists the known ones).
    """
    if metrics is None:
        return tuple(METRICS)
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else [str(m).strip() for m in metrics]
    names = [m for m in names if m]
    if names in (["all"], []):
        return tuple(METRICS) if names else ()
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise UsageError(f"unknown metric(s) {', '.join(unknown)}; known: all, {', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in names)  # table order


def required_networks(metrics: str | Iterable[str] | None = None) -> list[str]:
    """The networks (:func:`bids_recon.evaluate.networks.network_specs` keys) the selected metrics need, sorted."""
    return sorted({METRICS[m].network for m in select_metrics(metrics) if METRICS[m].network})


def skip_line(labels: Iterable[str], reason: str) -> str:
    """The one line that says which metrics were not computed and why (log, report)."""
    return f"{', '.join(labels)} not computed: {reason}"


def not_computed_lines(table: pd.DataFrame) -> list[str]:
    """One :func:`skip_line` per reason in a metrics table's ``not computed`` rows (all variants together).

    ``table`` has ``status`` and ``note`` columns, and ``label`` (else ``metric``) naming each row's metric.
    """
    if table.empty or "status" not in table:
        return []
    skipped = table[table["status"] == "not computed"]
    names = skipped["label"] if "label" in skipped else skipped["metric"]
    lines = []
    for note in dict.fromkeys(skipped["note"].fillna("").astype(str)):
        labels = dict.fromkeys(names[skipped["note"].fillna("").astype(str) == note].astype(str))
        lines.append(skip_line(labels, note or "no reason recorded"))
    return lines


def missing_weights_lines(metrics: str | Iterable[str] | None = None, allow_download: bool = False) -> list[str]:
    """One :func:`skip_line` per network of the selected metrics whose weights are not on disk (loads nothing).

    The lines are those :class:`StandardEvaluator` logs when it cannot load a network, so that a workflow can say
    them once before any work. Empty when downloads are allowed (the evaluator will try to download).
    """
    from bids_recon.evaluate.networks import weights_status

    if allow_download:
        return []
    selected = select_metrics(metrics)
    status = weights_status(required_networks(selected))
    return [skip_line([METRICS[m].label for m in selected if METRICS[m].network == name], reason)
            for name, reason in status.items() if reason != "present"]


class MetricsResult(NamedTuple):
    """What :func:`compute_standard_metrics` returns (unpacks as ``table, per_item, provenance``).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per metric: ``metric, label, value, chance, direction, kind, status, note, n, network, node,
        input_size, source`` (and ``aggregate, sample`` for :meth:`StandardEvaluator.evaluate_samples`).
        ``status`` is ``ok`` or ``not computed``; ``value`` is NaN when not computed and ``note`` says why.
    per_item : pandas.DataFrame
        One row per item (``item`` index) with each computed per-item metric (identification: the item's
        fraction of wins; distances: the item's distance).
    provenance : dict
        Definitions, preprocessing, networks (file, sha256, source), what was not computed and why, versions:
        for the metrics sidecar.
    """

    table: pd.DataFrame
    per_item: pd.DataFrame
    provenance: dict[str, Any]


# --------------------------------------------------------------------------------------------------------------
# preprocessing


def as_image_batch(images: Any, name: str) -> np.ndarray:
    """Check ``(n, H, W, 3)`` images (uint8, or float in [0, 1]) without copying them.

    The conversion to float32 in [0, 1] is done batch by batch (:meth:`StandardEvaluator._base`), so that 1,000
    NSD images (425 px) are never held as float copies.

    Raises
    ------
    BadDataError
        Wrong shape or dtype, non-finite values, or float values outside [0, 1].
    """
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise BadDataError(f"{name}: expected images of shape (n, H, W, 3), got {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise BadDataError(f"{name}: expected uint8 or float images, got {array.dtype}")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise BadDataError(f"{name}: images contain NaN or infinite values")
    if low < -1e-3 or high > 1 + 1e-3:
        raise BadDataError(f"{name}: expected float images in [0, 1], got values in [{low:.3g}, {high:.3g}]")
    return array


def network_input(base: Any, network: str, antialias: bool = False) -> Any:
    """The reference's ``preprocess`` for ``network``: resize the 256 px batch, then normalise."""
    from torchvision.transforms import functional as tvf

    size, mean, std = NETWORK_INPUT[network]
    return tvf.normalize(resize_batch(base, size, antialias), mean=list(mean), std=list(std))


# --------------------------------------------------------------------------------------------------------------
# scoring functions (arrays in, per-item arrays out)


def correlation_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``scipy.spatial.distance.correlation`` ``(n,)`` between paired rows: 1 - Pearson r (0 = identical)."""
    return 1.0 - paired_correlation(a, b)


def retrieval_top1(brain: np.ndarray, images: np.ndarray, pool_size: int = RETRIEVAL_POOL,
                   n_draws: int = RETRIEVAL_DRAWS, seed: int = RETRIEVAL_SEED) -> dict[str, Any]:
    """Image and brain retrieval: top-1 accuracy among ``pool_size`` random items, averaged over draws.

    Parameters
    ----------
    brain : ndarray, shape (n_items, ...)
        Embeddings decoded from the brain (flattened per item), in the same space as ``images``.
    images : ndarray, shape (n_items, ...)
        Embeddings of the seen images.
    pool_size, n_draws, seed
        Each draw takes ``pool_size`` distinct items (``RandomState(seed).choice(n, pool, replace=False)``,
        one state for all draws). With fewer than ``pool_size`` items, the pool is all items and one draw is
        made (every draw would be the same set).

    Returns
    -------
    dict
        ``image``: the published *image retrieval* (MindEye's "fwd" as its code computes it: for each image j of
        the pool, ``argmax_i cos(brain_i, image_j) == j``); ``brain``: the published *brain retrieval*
        ("bwd": for each brain embedding i, ``argmax_j cos(brain_i, image_j) == i``); ``image_draws``,
        ``brain_draws`` (per draw), ``pool``, ``draws``, ``chance``. See the module docstring for why the axes
        are as the code has them.
    """
    brain = np.asarray(brain, dtype=np.float64).reshape(len(brain), -1)
    images = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    n = len(brain)
    if n != len(images) or n < 2:
        raise ValueError(f"retrieval needs >= 2 paired embeddings, got {len(brain)} and {len(images)}")
    if brain.shape[1] != images.shape[1]:
        raise ValueError(f"embedding sizes differ: {brain.shape[1]} vs {images.shape[1]}")
    brain = brain / np.maximum(np.linalg.norm(brain, axis=1, keepdims=True), 1e-12)
    images = images / np.maximum(np.linalg.norm(images, axis=1, keepdims=True), 1e-12)
    pool = min(pool_size, n)
    draws = n_draws if pool < n else 1
    state = np.random.RandomState(seed)
    fwd, bwd = [], []
    for _ in range(draws):
        idx = state.choice(n, size=pool, replace=False) if pool < n else np.arange(n)
        sim = brain[idx] @ images[idx].T  # sim[i, j]: brain i vs image j
        labels = np.arange(pool)
        fwd.append(float(np.mean(sim.argmax(axis=0) == labels)))  # per image: the best brain embedding
        bwd.append(float(np.mean(sim.argmax(axis=1) == labels)))  # per brain embedding: the best image
    return {"image": float(np.mean(fwd)), "brain": float(np.mean(bwd)), "image_draws": np.array(fwd),
            "brain_draws": np.array(bwd), "pool": pool, "draws": draws, "chance": 1.0 / pool}


# --------------------------------------------------------------------------------------------------------------
# the evaluator


@dataclass
class _SetScores:
    """Per-item values of one set of reconstructions (internal)."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    chance: dict[str, np.ndarray] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    clip_embeds: np.ndarray | None = None
    n: int = 0


class StandardEvaluator:
    """Networks loaded once, seen-image features cached: evaluate many variants and samples cheaply.

    Parameters
    ----------
    metrics : str or iterable of str, optional
        Which metrics (ids of :data:`METRICS`, a comma list, or ``"all"``); None = all.
    device : str
        ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
    allow_download : bool
        Download missing network weights (never by default).
    batch_size : int
        Images per forward pass.
    hash_cache : Path, optional
        JSON file remembering the sha256 of weight files.
    antialias : bool
        Antialias the resizes (False: as the reference code ran).
    chance_levels : bool
        Compute the mismatched-pair chance of PixCorr, SSIM and the distances (costs one more SSIM pass).
    retrieval_pool, retrieval_draws, seed : int
        Retrieval settings (300, 30, 42: MindEye's).
    networks : dict, optional
        Already loaded networks (:class:`~bids_recon.evaluate.networks.LoadedNetwork` by network key), used
        instead of loading from disk.
    pixel_size : int
        Size (px) at which PixCorr and SSIM are computed, from the 256 px images (425: the published one).
    log_skips : bool
        Log one line per network whose metrics cannot be computed (False when the caller has already said so,
        as the workflow does before any work: :func:`missing_weights_lines`).
    """

    def __init__(self, metrics: str | Iterable[str] | None = None, device: str = "cpu", allow_download: bool = False,
                 batch_size: int = 32, hash_cache: Any = None, antialias: bool = False, chance_levels: bool = True,
                 retrieval_pool: int = RETRIEVAL_POOL, retrieval_draws: int = RETRIEVAL_DRAWS,
                 seed: int = RETRIEVAL_SEED, networks: dict[str, Any] | None = None, pixel_size: int = EVAL_SIZE,
                 log_skips: bool = True) -> None:
        from bids_recon.evaluate.networks import (
            WeightsNotFoundError,
            load_network,
            network_specs,
            not_found_message,
            resolve_device,
        )

        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        if pixel_size < 8:
            raise UsageError(f"pixel_size must be >= 8, got {pixel_size}")
        self.pixel_size = int(pixel_size)
        self.metrics = select_metrics(metrics)
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.antialias = bool(antialias)
        self.chance_levels = bool(chance_levels)
        self.retrieval = {"pool_size": int(retrieval_pool), "n_draws": int(retrieval_draws), "seed": int(seed)}
        self.networks: dict[str, Any] = {}
        self.unavailable: dict[str, str] = {}
        self._truth_cache: dict[str, dict[str, Any]] = {}
        needed = required_networks(self.metrics)
        specs = network_specs()
        for name in needed:
            if networks and name in networks:
                self.networks[name] = networks[name]
                continue
            try:
                self.networks[name] = load_network(name, str(self.device), allow_download, hash_cache)
            except BidsReconError as exc:  # missing (66) or unreadable (65) weights: skip, never raise
                missing = isinstance(exc, WeightsNotFoundError) and not allow_download
                reason = not_found_message(specs[name]) if missing else str(exc)
                self.unavailable[name] = reason
                if log_skips:
                    LOGGER.warning("%s", skip_line([METRICS[m].label for m in self.metrics
                                                    if METRICS[m].network == name], reason))

    # -- features --------------------------------------------------------------------------------------------

    def _base(self, images: np.ndarray) -> Any:
        """A batch of ``(b, H, W, 3)`` images as a ``(b, 3, 256, 256)`` float tensor in [0, 1] on the device."""
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(self.device)
        batch = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float().clamp(0.0, 1.0)
        return resize_batch(batch, BASE_SIZE, self.antialias)

    def _nodes(self) -> dict[str, list[str]]:
        nodes: dict[str, list[str]] = {}
        for m in self.metrics:
            spec = METRICS[m]
            if spec.network in self.networks and spec.node not in nodes.setdefault(spec.network, []):
                nodes[spec.network].append(spec.node)
        return nodes

    def _features(self, base: Any) -> dict[str, Any]:
        """``network:node`` -> ``(b, d)`` float32 CPU tensor for a 256 px batch."""
        out = {}
        for network, nodes in self._nodes().items():
            feats = self.networks[network].extract(network_input(base, network, self.antialias))
            for node in nodes:
                out[f"{network}:{node}"] = feats[node].float().flatten(1).cpu()
        return out

    def _truth_features(self, truths: np.ndarray) -> dict[str, Any]:
        import torch

        digest = hashlib.blake2b(np.ascontiguousarray(truths), digest_size=16).hexdigest()  # no copy
        key = f"{digest}{truths.shape}{truths.dtype}{self.antialias}"
        wanted = {f"{net}:{node}" for net, nodes in self._nodes().items() for node in nodes}
        cached = self._truth_cache.get(key, {})
        if wanted <= set(cached):
            return cached
        parts: dict[str, list[Any]] = {}
        with torch.inference_mode():
            for start in range(0, len(truths), self.batch_size):
                for name, value in self._features(self._base(truths[start:start + self.batch_size])).items():
                    parts.setdefault(name, []).append(value)
        self._truth_cache[key] = {name: torch.cat(values) for name, values in parts.items()}
        return self._truth_cache[key]

    # -- one set ---------------------------------------------------------------------------------------------

    def _score_set(self, recons: np.ndarray, truths: np.ndarray) -> _SetScores:
        import torch

        n = len(recons)
        scores = _SetScores(n=n)
        twins = same_items(truths)  # two items showing the same image: their pair is left out of identification
        pixel = [m for m in ("pixcorr", "ssim") if m in self.metrics]
        truth_feats = self._truth_features(truths) if self._nodes() else {}
        recon_parts: dict[str, list[Any]] = {}
        pix: dict[str, list[float]] = {f"{m}{suffix}": [] for m in pixel for suffix in ("", "_chance")}

        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                base = self._base(recons[start:stop])
                for name, value in self._features(base).items():
                    recon_parts.setdefault(name, []).append(value)
                if not pixel:
                    continue
                r425 = resize_batch(base, self.pixel_size, self.antialias)
                t425 = resize_batch(self._base(truths[start:stop]), self.pixel_size, self.antialias)
                pairs = [("", t425)]
                if self.chance_levels:  # each reconstruction against the next item's image
                    shifted = truths[np.arange(start + 1, stop + 1) % n]
                    pairs.append(("_chance", resize_batch(self._base(shifted), self.pixel_size, self.antialias)))
                r_np = r425.permute(0, 2, 3, 1).cpu().numpy()  # already at the pixel size: no resize below
                for suffix, t in pairs:
                    t_np = t.permute(0, 2, 3, 1).cpu().numpy()
                    if "pixcorr" in pixel:
                        pix["pixcorr" + suffix] += list(pixcorr(r_np, t_np, size=None))
                    if "ssim" in pixel:
                        pix["ssim" + suffix] += list(ssim(r_np, t_np, size=None))
        for m in pixel:
            scores.values[m] = np.array(pix[m])
            if self.chance_levels:
                scores.chance[m] = np.array(pix[m + "_chance"])
        recon_feats = {name: torch.cat(parts) for name, parts in recon_parts.items()}
        if "clip:image_embeds" in recon_feats:
            scores.clip_embeds = recon_feats["clip:image_embeds"].numpy()
        for m in self.metrics:
            spec = METRICS[m]
            if spec.network is None or spec.kind == "retrieval":
                continue
            if spec.network in self.unavailable:
                scores.notes[m] = self.unavailable[spec.network]
                continue
            name = f"{spec.network}:{spec.node}"
            pred, true = recon_feats[name], truth_feats[name]
            if spec.kind == "identification":
                if n < 2:
                    scores.notes[m] = "needs at least 2 items"
                    continue
                corr = correlation_matrix_torch(pred, true, self.device)
                scores.values[m] = identification_from_correlations(corr, twins)
            else:
                scores.values[m] = correlation_distance(pred.numpy(), true.numpy())
                if self.chance_levels:
                    scores.chance[m] = correlation_distance(pred.numpy(), np.roll(true.numpy(), -1, axis=0))
        return scores

    def _retrieval(self, truths: np.ndarray, decoded_clip: np.ndarray | None) -> tuple[dict[str, Any] | None, str]:
        if not {"retrieval_image", "retrieval_brain"} & set(self.metrics):
            return None, ""
        if "clip" in self.unavailable:
            return None, self.unavailable["clip"]
        if decoded_clip is None:
            return None, "needs brain-decoded CLIP ViT-L/14 image embeddings (no CLIP-space decoder in this run)"
        truth_clip = self._truth_features(truths)["clip:image_embeds"].numpy()
        decoded = np.asarray(decoded_clip, dtype=np.float64).reshape(len(decoded_clip), -1)
        if decoded.shape != truth_clip.shape:
            raise BadDataError(f"decoded_clip: expected shape {truth_clip.shape} (CLIP ViT-L/14 image embeddings "
                               f"of the test items), got {decoded.shape}")
        return retrieval_top1(decoded, truth_clip, **self.retrieval), ""

    # -- tables ----------------------------------------------------------------------------------------------

    def _rows(self, scores: _SetScores, retrieval: dict[str, Any] | None, retrieval_note: str,
              selected: np.ndarray | None = None) -> list[dict[str, Any]]:
        rows = []
        for m in self.metrics:
            spec = METRICS[m]
            row = {"metric": m, "label": spec.label, "value": np.nan, "chance": np.nan, "direction": spec.direction,
                   "kind": spec.kind, "status": "ok", "note": "", "n": scores.n, "network": spec.network or "",
                   "node": spec.node or "", "input_size": self.pixel_size if spec.network is None else spec.input_size,
                   "source": spec.source}
            if spec.kind == "retrieval":
                if retrieval is None:
                    row.update(status="not computed", note=retrieval_note)
                else:
                    key = "image" if m == "retrieval_image" else "brain"
                    row.update(value=retrieval[key], chance=retrieval["chance"],
                               note=f"pool {retrieval['pool']}, {retrieval['draws']} draw(s)")
            elif m in scores.values:
                row["value"] = float(np.mean(scores.values[m]))
                if spec.kind == "identification":
                    row["chance"] = 0.5
                elif m in scores.chance:
                    row["chance"] = float(np.mean(scores.chance[m]))
            else:
                row.update(status="not computed", note=scores.notes.get(m, "not computed"))
            rows.append(row)
        return rows

    def provenance(self) -> dict[str, Any]:
        """Definitions, preprocessing, networks used (file, sha256, source) and what could not run."""
        from importlib.metadata import version  # the installed versions, without importing the packages

        packages = ["torch", "torchvision", "scikit-image"] + (["transformers"] if "clip" in self.networks else [])
        versions = {name: version(name) for name in packages}
        return {
            "Convention": "MindEye (MedARC-AI/fMRI-reconstruction-NSD Reconstruction_Metrics.py, MindEyeV2 "
                          "final_evaluations.ipynb)",
            "Preprocessing": {"BaseSize": BASE_SIZE, "PixelSize": self.pixel_size, "Interpolation": "bilinear",
                              "Antialias": self.antialias,
                              "NetworkInput": {k: {"Size": v[0], "Mean": list(v[1]), "Std": list(v[2])}
                                               for k, v in NETWORK_INPUT.items()}},
            "Metrics": {m: {"Label": METRICS[m].label, "Definition": METRICS[m].definition,
                            "Direction": METRICS[m].direction, "Network": METRICS[m].network,
                            "Node": METRICS[m].node, "Source": METRICS[m].source} for m in self.metrics},
            "Retrieval": {"Pool": self.retrieval["pool_size"], "Draws": self.retrieval["n_draws"],
                          "Seed": self.retrieval["seed"], "Similarity": "cosine"},
            "Networks": {name: net.provenance for name, net in self.networks.items()},
            "NotComputed": {name: reason for name, reason in self.unavailable.items()},
            "Device": str(self.device),
            "Versions": versions,
        }

    # -- public ----------------------------------------------------------------------------------------------

    def evaluate(self, reconstructions: Any, truths: Any, decoded_clip: Any = None) -> MetricsResult:
        """Every selected metric for one set of reconstructions.

        Parameters
        ----------
        reconstructions, truths : array, shape (n_items, H, W, 3)
            Reconstructions and the seen images (uint8, or float in [0, 1]); the sizes may differ.
        decoded_clip : array, shape (n_items, 768), optional
            Brain-decoded CLIP ViT-L/14 image embeddings, for image and brain retrieval.

        Returns
        -------
        MetricsResult
            ``table, per_item, provenance``.
        """
        recons, truth = self._check_pair(reconstructions, truths)
        scores = self._score_set(recons, truth)
        retrieval, note = self._retrieval(truth, decoded_clip)
        return MetricsResult(pd.DataFrame(self._rows(scores, retrieval, note)), _per_item(scores),
                             self.provenance())

    def evaluate_samples(self, samples: Sequence[Any], truths: Any, selection: str | Iterable[str] = ("mean",),
                         decoded_clip: Any = None) -> MetricsResult:
        """Metrics of n samples per item: each sample, their mean, and best-of-n picks.

        Parameters
        ----------
        samples : sequence of arrays, each (n_items, H, W, 3)
            Sample k of every item (e.g. the seeds ``seed + k`` of the diffusion generator).
        truths : array, shape (n_items, H, W, 3)
            The seen images.
        selection : str or iterable of str
            Aggregates to add to the per-sample rows (:data:`SELECTIONS`):

            - ``mean``: each metric averaged over the samples (no selection).
            - ``brain_clip``: MindEye's rule: for each item the sample whose CLIP ViT-L/14 image embedding has
              the highest cosine similarity with the brain-decoded CLIP embedding (``decoded_clip``); uses no
              ground truth.
            - ``oracle_clip``: for each item the sample most similar (CLIP cosine) to the *seen image*. An
              upper bound that uses the ground truth: never comparable with published rows.
        decoded_clip : array, shape (n_items, 768), optional
            Needed by ``brain_clip`` and by retrieval.

        Returns
        -------
        MetricsResult
            ``table`` with ``aggregate`` (``sample``, ``mean``, ``best_brain_clip``, ``best_oracle_clip``) and
            ``sample`` (index, or -1) columns; ``per_item`` with the same two columns (for best-of-n rows,
            ``selected_sample`` is the chosen sample of each item).
        """
        rules = [selection] if isinstance(selection, str) else list(selection)
        unknown = [r for r in rules if r not in SELECTIONS]
        if unknown:
            raise UsageError(f"unknown selection rule(s) {', '.join(unknown)}; known: {', '.join(SELECTIONS)}")
        if len(samples) == 0:
            raise BadDataError("evaluate_samples: no samples given")
        truth = None
        all_scores = []
        for k, sample in enumerate(samples):
            recons, truth = self._check_pair(sample, truths, f"samples[{k}]")
            all_scores.append(self._score_set(recons, truth))
        assert truth is not None
        retrieval, note = self._retrieval(truth, decoded_clip)
        tables, items = [], []
        for k, scores in enumerate(all_scores):
            tables.append(_tagged(pd.DataFrame(self._rows(scores, retrieval, note)), "sample", k))
            items.append(_tagged(_per_item(scores), "sample", k))
        sample_tables = list(tables)
        for rule in rules:
            if rule == "mean":
                tables.append(_tagged(_mean_table(sample_tables), "mean", -1))
                continue
            picks, why = self._picks(rule, all_scores, truth, decoded_clip)
            if picks is None:
                table = pd.DataFrame(self._rows(_SetScores(n=all_scores[0].n), None, why))
                table["value"], table["status"], table["note"] = np.nan, "not computed", why
                tables.append(_tagged(table, f"best_{rule}", -1))
                continue
            chosen = _select(all_scores, picks)
            table = pd.DataFrame(self._rows(chosen, retrieval, note))
            table["note"] = _noted(table, f"best of {len(samples)} by {rule}")
            tables.append(_tagged(table, f"best_{rule}", -1))
            per_item = _tagged(_per_item(chosen), f"best_{rule}", -1)
            per_item["selected_sample"] = picks
            items.append(per_item)
        return MetricsResult(pd.concat(tables, ignore_index=True), pd.concat(items, ignore_index=True),
                             {**self.provenance(), "Selection": {r: SELECTION_TEXT[r] for r in rules},
                              "Samples": len(samples)})

    def _picks(self, rule: str, all_scores: list[_SetScores], truth: np.ndarray,
               decoded_clip: Any) -> tuple[np.ndarray | None, str]:
        if "clip" not in self.networks:
            reason = self.unavailable.get("clip", "CLIP is not among the selected metrics")
            return None, f"{rule} selection needs CLIP ViT-L/14: {reason}"
        if rule == "brain_clip":
            if decoded_clip is None:
                return None, "brain_clip selection needs brain-decoded CLIP embeddings (no CLIP-space decoder)"
            reference = np.asarray(decoded_clip, dtype=np.float64).reshape(all_scores[0].n, -1)
        else:
            reference = self._truth_features(truth)["clip:image_embeds"].numpy().astype(np.float64)
        reference = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
        sims = []
        for scores in all_scores:
            emb = np.asarray(scores.clip_embeds, dtype=np.float64)
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            sims.append((emb * reference).sum(axis=1))
        return np.argmax(np.stack(sims), axis=0), ""

    @staticmethod
    def _check_pair(reconstructions: Any, truths: Any, name: str = "reconstructions") -> tuple[np.ndarray, np.ndarray]:
        recons = as_image_batch(reconstructions, name)
        truth = as_image_batch(truths, "truths")
        if len(recons) != len(truth):
            raise BadDataError(f"{name}: {len(recons)} images but {len(truth)} seen images")
        if len(recons) == 0:
            raise BadDataError(f"{name}: no images")
        return recons, truth


#: What each best-of-n selection rule does (for sidecars, reports and methods text).
SELECTION_TEXT = {
    "mean": "each metric averaged over the samples (no selection)",
    "brain_clip": "per item, the sample whose CLIP ViT-L/14 image embedding is most cosine-similar to the "
                  "brain-decoded CLIP embedding (MindEye's rule; no ground truth used)",
    "oracle_clip": "per item, the sample most CLIP-similar to the seen image (uses the ground truth: an upper "
                   "bound, not comparable with published rows)",
}


def _per_item(scores: _SetScores) -> pd.DataFrame:
    frame = pd.DataFrame({m: v for m, v in scores.values.items()})
    frame.insert(0, "item", np.arange(scores.n))
    return frame


def _tagged(frame: pd.DataFrame, aggregate: str, sample: int) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, "aggregate", aggregate)
    frame.insert(1, "sample", sample)
    return frame


def _noted(table: pd.DataFrame, how: str) -> list[str]:
    """The rows' notes with how the value was made appended (not to rows not computed: their note is why)."""
    return [f"{note}; {how}".lstrip("; ") if status == "ok" else note
            for note, status in zip(table["note"], table["status"], strict=True)]


def _mean_table(tables: list[pd.DataFrame]) -> pd.DataFrame:
    stacked = pd.concat(tables, ignore_index=True)
    first = tables[0].drop(columns=["aggregate", "sample"]).copy()
    grouped = stacked.groupby("metric", sort=False)
    first["value"] = grouped["value"].mean().reindex(first["metric"]).to_numpy()
    first["sd"] = grouped["value"].std(ddof=1).reindex(first["metric"]).to_numpy()
    first["chance"] = grouped["chance"].mean().reindex(first["metric"]).to_numpy()
    first["note"] = _noted(first, f"mean of {len(tables)} samples")
    return first


def _select(all_scores: list[_SetScores], picks: np.ndarray) -> _SetScores:
    chosen = _SetScores(n=all_scores[0].n, notes=dict(all_scores[0].notes))
    items = np.arange(chosen.n)
    for m in all_scores[0].values:
        chosen.values[m] = np.stack([s.values[m] for s in all_scores])[picks, items]
    for m in all_scores[0].chance:
        chosen.chance[m] = np.stack([s.chance[m] for s in all_scores])[picks, items]
    return chosen


def compute_standard_metrics(reconstructions: Any, truths: Any, metrics: str | Iterable[str] | None = None,
                             device: str = "cpu", allow_download: bool = False, decoded_clip: Any = None,
                             batch_size: int = 32, hash_cache: Any = None, **options: Any) -> MetricsResult:
    """The published table's metrics for one set of reconstructions (one call; networks loaded each time).

    Parameters
    ----------
    reconstructions, truths : array, shape (n_items, H, W, 3)
        Reconstructions and the seen images (uint8, or float in [0, 1]).
    metrics : str or iterable of str, optional
        Ids of :data:`METRICS` (``pixcorr, ssim, alexnet2, alexnet5, inceptionv3, clip, effnet, swav,
        retrieval_image, retrieval_brain``), a comma list, or ``"all"`` (default).
    device : str
        ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
    allow_download : bool
        Download missing network weights (False: a metric without weights is reported as not computed).
    decoded_clip : array, shape (n_items, 768), optional
        Brain-decoded CLIP ViT-L/14 image embeddings (for retrieval).
    batch_size : int
        Images per forward pass.
    hash_cache : Path, optional
        JSON file remembering weight-file digests.
    **options
        Other :class:`StandardEvaluator` settings (``antialias``, ``chance_levels``, ``retrieval_pool``,
        ``retrieval_draws``, ``seed``, ``networks``).

    Returns
    -------
    MetricsResult
        ``(table, per_item, provenance)``; see :class:`MetricsResult`.
    """
    evaluator = StandardEvaluator(metrics, device=device, allow_download=allow_download, batch_size=batch_size,
                                  hash_cache=hash_cache, **options)
    return evaluator.evaluate(reconstructions, truths, decoded_clip=decoded_clip)


__all__ = ["METRICS", "SELECTIONS", "SELECTION_TEXT", "MetricSpec", "MetricsResult", "StandardEvaluator",
           "compute_standard_metrics", "correlation_distance", "missing_weights_lines", "not_computed_lines",
           "required_networks", "retrieval_top1", "select_metrics", "skip_line"]
