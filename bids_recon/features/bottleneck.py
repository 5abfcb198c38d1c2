"""``z_c``: the U-Net's bottleneck features of a stimulus's z+c img2img, at a few noise levels.

Takagi & Nishimoto (2023) fitted encoding models from the denoising U-Net's bottleneck (the output of its
middle block) while it denoises the image latent ``z`` conditioned on the caption embedding ``c``, and showed
that with little noise these features look like ``z`` (early visual cortex) and with more noise they carry
more of ``c`` (higher cortex). Here, for each noise level ``s`` (a fraction of the training schedule), ``z`` is
noised to timestep ``t = round(s * T)`` (``T`` = the scheduler's training steps, 1000 for SD-1.x) with the
forward process ``sqrt(abar_t) z + sqrt(1 - abar_t) eps`` and the U-Net is run once at ``t`` conditioned on
``c``; a forward hook on ``unet.mid_block`` takes its output (1280 x h/8 x w/8 for SD-1.x, so 32,000 features
for a 40 x 40 latent) and stops the pass there (the up-sampling half is never computed). This is the first
denoising step of an img2img at strength ``s``, not the average over every step of the reverse process.

The noise ``eps`` of a stimulus is drawn from ``numpy.random.default_rng([seed, h])``, ``h`` from the content of
its ``z`` and ``c``: it does not depend on the order or the batch of the stimuli, and is the same at every level.
Batches are fixed slices of the stimulus list, computed whole when any of their entries is not cached, so the
same stimulus list gives the same features bit for bit whatever the cache held.
Every array is cached by (``z``, ``c``, level, seed) in a :class:`~bids_recon.features.cache.FeatureCache`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bids_recon.errors import BadDataError, UsageError
from bids_recon.features.cache import FeatureCache, content_hash


def space_name(level: float) -> str:
    """Name of the feature space of noise level ``level``: ``0.25`` -> ``"zc25"``."""
    return f"zc{round(100 * float(level))}"


def timestep_of(level: float, n_train_timesteps: int) -> int:
    """The diffusion timestep of a noise level (fraction of the training schedule)."""
    if not 0 < level < 1:
        raise UsageError(f"z_c noise levels must be between 0 and 1 (exclusive), got {level}")
    return int(min(n_train_timesteps - 1, max(1, round(level * n_train_timesteps))))


class _Stop(Exception):
    """Raised by the hook to end the U-Net's forward pass after its middle block."""

    def __init__(self, output: Any) -> None:
        super().__init__("mid block reached")
        self.output = output


def unet_bottleneck(unet: Any, latents: Any, timestep: int, embeddings: Any) -> Any:
    """The output of ``unet.mid_block`` for noisy ``latents`` at ``timestep`` conditioned on ``embeddings``.

    Parameters
    ----------
    unet : diffusers.UNet2DConditionModel
    latents : torch.Tensor, shape (n, C, h, w)
    timestep : int
    embeddings : torch.Tensor, shape (n, L, D)

    Returns
    -------
    torch.Tensor, shape (n, C_mid, h_mid, w_mid)
    """
    import torch

    if getattr(unet, "mid_block", None) is None:
        raise UsageError("the U-Net has no middle block (mid_block) to take z_c features from")

    def stop(module, inputs, output):
        raise _Stop(output)

    handle = unet.mid_block.register_forward_hook(stop)
    try:
        with torch.inference_mode():
            unet(latents, timestep, encoder_hidden_states=embeddings)
    except _Stop as reached:
        return reached.output
    finally:
        handle.remove()
    raise RuntimeError("the U-Net's forward pass did not reach its middle block")  # pragma: no cover


def bottleneck_features(
    unet: Any,
    scheduler: Any,
    z: np.ndarray,
    c: np.ndarray,
    levels: Sequence[float],
    seed: int = 0,
    cache: FeatureCache | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """z_c features of stimuli at each noise level (see the module docstring), computed or read from ``cache``.

    Parameters
    ----------
    unet : diffusers.UNet2DConditionModel
        On its device and dtype.
    scheduler : diffusers scheduler
        The model's noise schedule (``add_noise``, ``config.num_train_timesteps``).
    z : ndarray, shape (n, C, h, w)
        VAE latents (scaled by the VAE's scaling factor), as :func:`bids_recon.features.latents.encode_images`.
    c : ndarray, shape (n, L, D)
        Caption embeddings, as :func:`bids_recon.features.latents.stimulus_features`.
    levels : sequence of float
        Noise levels in (0, 1).
    seed : int
        Seed of the noise.
    cache : FeatureCache, optional
        Its ``extractor`` must identify the model (and device, since fp16 and fp32 differ slightly).

    Returns
    -------
    dict of str to ndarray, shape (n, n_features), float32
        :func:`space_name` of each level -> the flattened bottleneck output of every stimulus.
    """
    import torch

    z, c = np.asarray(z, np.float32), np.asarray(c, np.float32)
    if z.ndim != 4 or c.ndim != 3 or len(z) != len(c):
        raise BadDataError(f"z must be (n, C, h, w) and c (n, L, D) for the same stimuli, got {z.shape} and {c.shape}")
    n_steps = int(scheduler.config.num_train_timesteps)
    device, dtype = unet.device, unet.dtype
    digests = [content_hash(np.ascontiguousarray(zi).tobytes() + np.ascontiguousarray(ci).tobytes())
               for zi, ci in zip(z, c, strict=True)]
    out = {}
    for level in levels:
        t = timestep_of(level, n_steps)
        keys = [content_hash(f"{d}|t{t}|seed{seed}") for d in digests]
        space = space_name(level)
        found = [cache.get(space, k) if cache is not None else None for k in keys]
        # batches are fixed slices of the whole list, and a batch with any entry missing is computed whole: the
        # result does not depend on what the cache already held (float results depend slightly on the batch)
        starts = [b for b in range(0, len(z), batch_size) if any(a is None for a in found[b:b + batch_size])]
        if progress and starts:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"U-Net bottleneck ({space})")
        for start in starts:
            rows = list(range(start, min(len(z), start + batch_size)))
            noise = np.stack([np.random.default_rng([seed, int(digests[i][:12], 16)]).standard_normal(z.shape[1:])
                              for i in rows]).astype(np.float32)
            timesteps = torch.full((len(rows),), t, dtype=torch.long)
            noisy = scheduler.add_noise(torch.from_numpy(z[rows]), torch.from_numpy(noise), timesteps)
            features = unet_bottleneck(unet, noisy.to(device, dtype), t, torch.from_numpy(c[rows]).to(device, dtype))
            features = features.float().cpu().numpy().reshape(len(rows), -1)
            for i, array in zip(rows, features, strict=True):
                if cache is not None and found[i] is None:
                    cache.put(space, keys[i], array)
                found[i] = array
        out[space] = np.stack(found).astype(np.float32) if found else np.zeros((0, 0), np.float32)
    return out
