"""The latent-diffusion generator of Takagi & Nishimoto (2023): decoded ``z`` and ``c`` -> images.

Three variants, as in the paper's figure:

- ``z``: the VAE decoding of the decoded latent ``z`` (one image per stimulus, deterministic);
- ``c``: text-to-image from the decoded embedding ``c`` (``n_samples`` seeded samples);
- ``zc``: img2img: the ``z`` image, resized to the model's size, noised to ``strength`` and denoised
  conditioned on ``c`` (``n_samples`` seeded samples). The paper's setting: DDIM 50 steps, strength 0.8,
  guidance 5.

Decoded ``c`` is passed as ``prompt_embeds`` and the empty-caption embedding as ``negative_prompt_embeds``.
Sample ``k`` of every stimulus uses ``torch.Generator().manual_seed(seed + k)``, so results do not depend on
the batch size. fp16 and SDPA attention on CUDA (see :func:`bids_recon.generate.models.load_components`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from bids_recon.errors import BadDataError, UsageError
from bids_recon.params import setting

LOGGER = logging.getLogger("bids_recon.generate.diffusion")

VARIANTS = ("z", "c", "zc")

#: Output-name labels (``desc-``) of the two decoding targets.
Z_TARGET, C_TARGET = "vaelatent", "textembedding"


@dataclass
class DiffusionParams:
    """Settings of the latent-diffusion generator (``[workflow.generate.diffusion]``): the paper's by default.

    ``model`` is a local diffusers folder or a hub id, found offline (``model_dir``, the Hugging Face cache)
    unless the run allows downloads (``execution.allow_download``, ``--allow-download``). ``feature_cache``
    empty = ``<work_dir>/feature_cache``. ``output_size`` 0 = the model's own size (512 px for SD-1.x). Sample
    ``k`` of every stimulus uses seed ``seed + k``.
    """

    model: str = setting("CompVis/stable-diffusion-v1-4", doc=(
        "local diffusers folder, or a Hugging Face hub id looked up in model_dir and the HF cache (HF_HOME); "
        "never downloaded without --allow-download (execution.allow_download)"))
    model_dir: str = setting("", doc=(
        "folder holding models under their hub id (DIR/CompVis/stable-diffusion-v1-4); default $BIDS_RECON_MODEL_DIR"))
    feature_cache: str = setting("", doc=(
        "cache of stimulus z/c features shared across subjects and runs (default WORK_DIR/feature_cache)"))
    latent_image_size: int = setting(320, ge=8, le=2048, doc=(
        "stimuli are resized to this size (px) before VAE encoding (paper: 320 -> 4x40x40)"))
    z_roi: str = setting("earlyvisual", doc="ROI whose betas are decoded to z")
    c_roi: str = setting("highervisual", doc="ROI whose betas are decoded to c")
    steps: int = setting(50, ge=1, le=1000, doc="DDIM steps")
    strength: float = setting(0.8, gt=0, le=1, doc="img2img noise strength (0-1]")
    guidance_scale: float = setting(5.0, ge=0, doc="classifier-free guidance against the empty-caption embedding")
    n_samples: int = setting(5, ge=1, doc="samples per image (c and z+c)")
    seed: int = setting(42, ge=0, doc="sample k of every stimulus uses seed + k")
    batch_size: int = setting(8, ge=1, doc="images per batch (feature extraction and generation)")
    output_size: int = setting(0, ge=0, doc="size (px) of generated images; 0 = the model's own (512 for SD-1.x)")
    variants: list[str] = setting(factory=lambda: list(VARIANTS), choices=VARIANTS, min_items=1, doc=(
        "reconstructions to make: z only, c only, z+c (img2img)"))
    progress: bool = setting(True, doc="progress bars")

    def to_sidecar(self) -> dict[str, Any]:
        """The sampling settings as written into JSON sidecars."""
        return {"Scheduler": "DDIM", "Steps": self.steps, "Strength": self.strength,
                "GuidanceScale": self.guidance_scale, "SamplesPerImage": self.n_samples, "Seed": self.seed,
                "SeedRule": "sample k of every stimulus uses seed + k", "Variants": list(self.variants),
                "NegativePrompt": "empty-caption embedding"}


@dataclass
class GeneratedImage:
    """One generated image: which stimulus, variant and sample, with its seed and pixels ``(H, W, 3)`` in [0, 1]."""

    index: int
    variant: str
    sample: int
    seed: int | None
    image: np.ndarray


class DiffusionGenerator:
    """Generate images from decoded latents and embeddings with a Stable-Diffusion-style model.

    Parameters
    ----------
    components : dict
        ``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler`` (from ``load_components``).
    settings : DiffusionParams
    """

    name = "diffusion"

    def __init__(self, components: dict[str, Any], settings: DiffusionParams) -> None:
        from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

        unknown = set(settings.variants) - set(VARIANTS)
        if unknown:
            raise UsageError(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
        self.settings = settings
        parts = {k: components[k] for k in ("unet", "vae", "text_encoder", "tokenizer")}
        scheduler = DDIMScheduler.from_config(components["scheduler"].config)
        self.img2img = StableDiffusionImg2ImgPipeline(**parts, scheduler=scheduler, safety_checker=None,
                                                      feature_extractor=None, requires_safety_checker=False)
        self.txt2img = StableDiffusionPipeline(**parts, scheduler=scheduler, safety_checker=None,
                                               feature_extractor=None, requires_safety_checker=False)
        for pipe in (self.img2img, self.txt2img):
            pipe.set_progress_bar_config(disable=True)
        self.vae = components["vae"]
        self.device = self.vae.device
        self.dtype = self.vae.dtype
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.output_size = settings.output_size or int(components["unet"].config.sample_size) * factor

    # -------------------------------------------------------------------------------------------- pieces
    def decode_latents(self, z: np.ndarray) -> np.ndarray:
        """VAE-decode latents ``(n, C, h, w)`` (scaled by the VAE scaling factor) to images ``(n, H, W, 3)``."""
        import torch

        scale = float(getattr(self.vae.config, "scaling_factor", 1.0))
        out = []
        with torch.inference_mode():
            for start in range(0, len(z), self.settings.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(z[start:start + self.settings.batch_size]))
                pixels = self.vae.decode(x.to(self.device, self.dtype) / scale).sample
                out.append(((pixels.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def _resize(self, images: np.ndarray) -> Any:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        if x.shape[-1] != self.output_size or x.shape[-2] != self.output_size:
            x = F.interpolate(x, size=(self.output_size, self.output_size), mode="bicubic", align_corners=False)
        return x.clamp(0, 1)

    def _embeds(self, c: np.ndarray, uncond: np.ndarray) -> tuple[Any, Any]:
        import torch

        prompt = torch.from_numpy(np.ascontiguousarray(c)).to(self.device, self.dtype)
        negative = torch.from_numpy(np.broadcast_to(uncond, c.shape).copy()).to(self.device, self.dtype)
        return prompt, negative

    def _generators(self, seeds: list[int]) -> list[Any]:
        import torch

        return [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]

    # ---------------------------------------------------------------------------------------------- run
    def generate(self, z: np.ndarray, c: np.ndarray, uncond: np.ndarray,
                 on_batch: Callable[[int], None] | None = None) -> Iterator[GeneratedImage]:
        """Generate every variant for every stimulus, yielding images batch by batch (memory stays flat).

        Parameters
        ----------
        z : ndarray, shape (n, C, h, w)
            Decoded VAE latents.
        c : ndarray, shape (n, L, D)
            Decoded text embeddings.
        uncond : ndarray, shape (L, D)
            Empty-caption embedding.
        on_batch : callable, optional
            Called with the number of images of each finished batch (progress reporting).
        """
        s = self.settings
        if len(z) != len(c):
            raise BadDataError(f"{len(z)} decoded latents but {len(c)} decoded embeddings")
        z_images = self.decode_latents(z) if {"z", "zc"} & set(s.variants) else None
        if "z" in s.variants:
            for i in range(len(z)):
                yield GeneratedImage(i, "z", 0, None, z_images[i])
            if on_batch:
                on_batch(len(z))
        jobs = [(i, k) for i in range(len(c)) for k in range(s.n_samples)]
        for variant in ("c", "zc"):
            if variant not in s.variants:
                continue
            for start in range(0, len(jobs), s.batch_size):
                batch = jobs[start:start + s.batch_size]
                rows = [i for i, _ in batch]
                seeds = [s.seed + k for _, k in batch]
                prompt, negative = self._embeds(c[rows], uncond)
                common = {"prompt_embeds": prompt, "negative_prompt_embeds": negative, "guidance_scale":
                          s.guidance_scale, "num_inference_steps": s.steps, "generator": self._generators(seeds),
                          "output_type": "np"}
                if variant == "zc":
                    images = self.img2img(image=self._resize(z_images[rows]), strength=s.strength, **common).images
                else:
                    images = self.txt2img(height=self.output_size, width=self.output_size, **common).images
                for (i, k), seed, image in zip(batch, seeds, images, strict=True):
                    yield GeneratedImage(i, variant, k, seed, np.asarray(image, np.float32))
                if on_batch:
                    on_batch(len(batch))

    def n_images(self, n_stimuli: int) -> int:
        """How many images :meth:`generate` yields for ``n_stimuli`` stimuli."""
        s = self.settings
        return n_stimuli * (("z" in s.variants) + s.n_samples * (("c" in s.variants) + ("zc" in s.variants)))
