"""The paper's stimulus features: the VAE latent ``z`` of each image and the text embedding ``c`` of its captions.

- ``z``: the image resized to ``image_size`` (paper: 320 px), scaled to [-1, 1], encoded by the diffusion
  model's VAE; the posterior mean times the VAE scaling factor (4 x 40 x 40 for SD-1.4 at 320 px).
- ``c``: the text encoder's last hidden state (77 x 768 for SD-1.4) of each caption, averaged over the
  image's captions.
- the empty-caption embedding (the unconditional embedding of classifier-free guidance).

Every array is cached per stimulus by (content hash, model identity) in a :class:`FeatureCache`, so a large
stimulus set is encoded once across subjects and runs. Models are passed in already loaded (see
:func:`bids_recon.generate.models.load_components`); nothing here decides where they come from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bids_recon.features.cache import FeatureCache, content_hash
from bids_recon.features.stimuli import StimulusResolver

LOGGER = logging.getLogger("bids_recon.features.latents")


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc)


def encode_images(vae: Any, images: np.ndarray, batch_size: int = 8, progress: bool = False) -> np.ndarray:
    """VAE latents (posterior mean x scaling factor) of images.

    Parameters
    ----------
    vae : diffusers.AutoencoderKL
        On its device and dtype.
    images : ndarray, shape (n, H, W, 3)
        RGB in [0, 1].

    Returns
    -------
    ndarray, shape (n, C, H / f, W / f), float32
        ``C`` latent channels, ``f`` the VAE's downsampling factor.
    """
    import torch

    device, dtype = vae.device, vae.dtype
    scale = float(getattr(vae.config, "scaling_factor", 1.0))
    out = []
    starts = range(0, len(images), batch_size)
    with torch.inference_mode():
        for start in _progress(starts, len(starts), "VAE latents (z)", progress):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size].transpose(0, 3, 1, 2)))
            x = (x.to(device=device, dtype=dtype) * 2.0) - 1.0
            latent = vae.encode(x).latent_dist.mean * scale
            out.append(latent.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def encode_texts(tokenizer: Any, text_encoder: Any, texts: list[str], batch_size: int = 32,
                 progress: bool = False) -> np.ndarray:
    """Last hidden states of the text encoder, padded to the tokenizer's maximum length.

    Returns
    -------
    ndarray, shape (n_texts, max_length, hidden), float32
        ``max_length`` = 77 and ``hidden`` = 768 for SD-1.x.
    """
    import torch

    device = text_encoder.device
    out = []
    starts = range(0, len(texts), batch_size)
    with torch.inference_mode():
        for start in _progress(starts, len(starts), "Text embeddings (c)", progress):
            tokens = tokenizer(texts[start:start + batch_size], padding="max_length",
                               max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
            hidden = text_encoder(tokens.input_ids.to(device))[0]
            out.append(hidden.float().cpu().numpy())
    return np.concatenate(out)


@dataclass
class StimulusFeatures:
    """``z`` and ``c`` of a list of stimuli.

    Attributes
    ----------
    stim_ids : ndarray of str, shape (n,)
    z : ndarray, shape (n, C, h, w)
    c : ndarray, shape (n, L, D)
    uncond : ndarray, shape (L, D)
        Embedding of the empty caption.
    cache_stats : dict
        ``hits``, ``misses``, ``corrupted`` of the cache lookups.
    """

    stim_ids: np.ndarray
    z: np.ndarray
    c: np.ndarray
    uncond: np.ndarray
    cache_stats: dict[str, int]


def _cached(cache: FeatureCache, space: str, keys: list[str], compute: Callable[[list[int]], np.ndarray],
            chunk: int = 256) -> np.ndarray:
    """The arrays of ``keys`` stacked, shape ``(len(keys), ...)`` float32: cached ones read, the missing ones
    computed ``chunk`` at a time and cached as each chunk ends (a run killed midway resumes from the last chunk).

    Each array goes straight into one preallocated result, so the peak is the result plus one chunk (NSD's c:
    2.4 GB), never a list of arrays plus its stacked copy.
    """
    out: np.ndarray | None = None

    def place(i: int, array: np.ndarray) -> None:
        nonlocal out
        if out is None:
            out = np.empty((len(keys), *np.shape(array)), np.float32)
        elif np.shape(array) != out.shape[1:]:
            raise RuntimeError(f"feature space {space}: an array of shape {np.shape(array)} among arrays of shape "
                               f"{out.shape[1:]} (stimulus {i} of {len(keys)})")
        out[i] = array

    todo = []
    for i, key in enumerate(keys):
        array = cache.get(space, key)
        if array is None:
            todo.append(i)
        else:
            place(i, array)
    for start in range(0, len(todo), chunk):
        rows = todo[start:start + chunk]
        computed = compute(rows)
        if len(computed) != len(rows):
            raise RuntimeError(f"feature space {space}: {len(computed)} arrays computed for {len(rows)} stimuli")
        for i, array in zip(rows, computed, strict=True):
            cache.put(space, keys[i], array)
            place(i, array)
        del computed
    return out if out is not None else np.zeros((0,), np.float32)


def stimulus_features(
    resolver: StimulusResolver,
    stim_ids: list[str],
    captions: dict[str, list[str]],
    components: dict[str, Any],
    cache: FeatureCache,
    image_size: int = 320,
    batch_size: int = 8,
    progress: bool = False,
    chunk_stimuli: int = 256,
) -> StimulusFeatures:
    """Compute (or read from the cache) ``z``, ``c`` and the empty-caption embedding of stimuli.

    Parameters
    ----------
    resolver : StimulusResolver
        Maps stimulus ids to images and to the content keys of the cache (any kind: files, NSD rows...).
    stim_ids : list of str
    captions : dict
        Stimulus id -> its captions (every id must have at least one).
    components : dict
        ``vae``, ``tokenizer`` and ``text_encoder`` (loaded models).
    cache : FeatureCache
        Its ``extractor`` must identify the model and these settings.
    image_size : int
        Images are resized to ``image_size`` px before VAE encoding (paper: 320).
    batch_size : int
        Images per VAE pass (captions: 4 x as many per text-encoder pass).
    chunk_stimuli : int
        Stimuli read and encoded at a time (memory stays flat in the number of stimuli).
    """
    if chunk_stimuli < 1:
        raise ValueError(f"chunk_stimuli must be >= 1, got {chunk_stimuli}")
    missing = [s for s in stim_ids if not captions.get(s)]
    if missing:
        from bids_recon.errors import BadDataError

        raise BadDataError(f"{len(missing)} stimuli have no caption (first: {missing[0]})")
    image_keys = [content_hash(f"{resolver.content_key(s)}|{image_size}") for s in stim_ids]
    caption_keys = [content_hash("\n".join(captions[s])) for s in stim_ids]

    # stimuli are read and encoded chunk_stimuli at a time (_cached): NSD's 9,841 images at 320 px are 12 GB as
    # float32 and their 49,000 captions' hidden states 11.6 GB, where one chunk of 256 is about 300 MB
    def compute_z(rows: list[int]) -> np.ndarray:
        images = resolver.load_images([stim_ids[i] for i in rows], image_size)
        return encode_images(components["vae"], images, batch_size, progress)

    def compute_c(rows: list[int]) -> np.ndarray:
        texts = [t for i in rows for t in captions[stim_ids[i]]]
        hidden = encode_texts(components["tokenizer"], components["text_encoder"], texts, 4 * batch_size, progress)
        out, start = [], 0
        for i in rows:
            n = len(captions[stim_ids[i]])
            out.append(hidden[start:start + n].mean(axis=0))
            start += n
        return np.stack(out)

    z = _cached(cache, "z", image_keys, compute_z, chunk_stimuli)
    c = _cached(cache, "c", caption_keys, compute_c, chunk_stimuli)
    (uncond,) = _cached(cache, "c", [content_hash("")],
                        lambda rows: encode_texts(components["tokenizer"], components["text_encoder"], [""]))
    LOGGER.info("stimulus features: %d stimuli, cache hits %d, misses %d (corrupted %d)", len(stim_ids),
                cache.hits, cache.misses, cache.corrupted)
    return StimulusFeatures(np.asarray(stim_ids, dtype=str), z, c, uncond,
                            {"hits": cache.hits, "misses": cache.misses, "corrupted": cache.corrupted})
