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

Its card is :class:`DiffusionCard` (settings, flags, decoders, feature spaces, the model it resolves and
``bids_recon-fetch`` downloads, the captions it needs, its variants' names); its part of the workflow is built by
:mod:`bids_recon.workflows.generators.diffusion`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bids_recon.errors import BadDataError, MissingInputError, UsageError
from bids_recon.evaluate.methods import evaluation_methods
from bids_recon.generate.card import GeneratorCard, OutputVariant, RunConfig, register
from bids_recon.params import setting

if TYPE_CHECKING:  # pragma: no cover
    from bids_recon.download import FetchItem, Layout
    from bids_recon.features.resolvers import StimulusResolver
    from bids_recon.generate.models import ResolvedModel

LOGGER = logging.getLogger("bids_recon.generate.diffusion")

#: The reconstructions of the paper's figure: their index value, report label, and whether they are sampled.
OUTPUT_VARIANTS = (OutputVariant("z", "z only", sampled=False), OutputVariant("c", "c only"),
                   OutputVariant("zc", "z + c"))
VARIANTS = tuple(v.name for v in OUTPUT_VARIANTS)

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


# ------------------------------------------------------------------------------------------------------------------
# the card


def feature_cache_dir(config: RunConfig) -> Path:
    """The feature cache folder: ``feature_cache`` or ``<work_dir>/feature_cache``."""
    diff = config.workflow.generate.diffusion
    return Path(diff.feature_cache) if diff.feature_cache else Path(config.execution.work_dir) / "feature_cache"


@functools.cache
def _resolve(spec: str, model_dir: str, allow_download: bool, hash_cache: str) -> ResolvedModel:
    from bids_recon.generate.models import resolve_model

    return resolve_model(spec, model_dir or None, allow_download, Path(hash_cache))


def configured_model(config: RunConfig) -> ResolvedModel:
    """Resolve the configured model once per process (raises ``MissingInputError``, exit 66, when absent)."""
    diff = config.workflow.generate.diffusion
    return _resolve(diff.model, diff.model_dir, config.execution.allow_download,
                    str(feature_cache_dir(config) / "model_hashes.json"))


def check_captions(resolver: StimulusResolver, stim_ids: Sequence[str]) -> None:
    """Check that every stimulus has a caption (the diffusion generator's c needs one).

    Raises
    ------
    MissingInputError
        The captions source (TSV, COCO JSON or folder of them) does not exist (exit code 66).
    BadDataError
        Columns missing, or stimuli without a caption (the message lists the first ones and, for COCO, their
        ids; exit code 65).
    """
    from bids_recon.features.captions import captions_path, stimulus_captions

    stim_ids = list(stim_ids)
    source = captions_path(resolver.bids_dir, resolver.params).resolve()
    if not source.exists() and not resolver.params.category_captions:
        raise MissingInputError(
            "captions table does not exist: the diffusion generator needs one caption or more per stimulus "
            "(a TSV with columns stim_file, caption, or COCO captions JSON; give it with --captions FILE)", source)
    _, missing = stimulus_captions(resolver, stim_ids, source)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise BadDataError(
            f"{len(missing)} of {len(stim_ids)} stimuli have no caption ({shown}): add captions for them, use "
            "--category-captions where the dataset has categories, or run with --generator linear, which needs no "
            "captions", source)


@register
class DiffusionCard(GeneratorCard):
    name = "diffusion"
    params = DiffusionParams
    summary = "Takagi & Nishimoto (2023): decoded VAE latent z and caption embedding c, latent-diffusion img2img"
    options_title = "Latent diffusion (--generator diffusion)"
    roi_settings = ("z_roi", "c_roi")
    references = ("rombach2022",)
    fetch_group = "diffusion"
    encoding_default = True
    encoding_partition = ("z", "c")
    variants = OUTPUT_VARIANTS

    def add_options(self, option: Any, paths: Any) -> None:
        option("--model", key="model", type=paths.absolute_if_exists)
        option("--model-dir", key="model_dir", type=paths.absolute, metavar="DIR")
        option("--captions", key="workflow.stimuli.captions", type=paths.absolute, metavar="FILE|DIR")
        option("--category-captions", key="workflow.stimuli.category_captions", action="store_const", const=True)
        option("--synset-words", key="workflow.stimuli.synset_words", type=paths.absolute, metavar="FILE")
        option("--feature-cache", key="feature_cache", type=paths.absolute, metavar="DIR")
        option("--latent-image-size", key="latent_image_size", type=int)
        option("--diffusion-steps", key="steps", type=int)
        option("--strength", key="strength", type=float)
        option("--guidance-scale", key="guidance_scale", type=float)
        option("--n-samples", key="n_samples", type=int)
        option("--diffusion-seed", key="seed", type=int)
        option("--diffusion-batch-size", key="batch_size", type=int)
        option("--output-size", key="output_size", type=int)
        option("--variants", key="variants", nargs="+")
        option("--no-progress", key="progress", action="store_const", const=False, help="no progress bars")
        option("--z-roi", key="z_roi")
        option("--c-roi", key="c_roi")

    def decoders(self, config: RunConfig) -> list[tuple[str, str]]:
        diff = self.settings(config)
        return [(diff.z_roi, Z_TARGET), (diff.c_roi, C_TARGET)]

    def feature_spaces(self, config: RunConfig) -> dict[str, str]:
        from bids_recon.features.bottleneck import space_name

        diff = self.settings(config)
        spaces = {"z": f"the VAE latent of '{diff.model}' at {diff.latent_image_size} px",
                  "c": f"the text encoder's last hidden state of '{diff.model}' averaged over the captions"}
        for level in config.workflow.encoding.zc_noise_levels:
            spaces[space_name(level)] = (f"z_c, the U-Net's bottleneck (mid-block output) for z noised to {level:g} "
                                         "of the diffusion schedule and conditioned on c")
        return spaces

    def check_inputs(self, config: RunConfig, checked: Any) -> None:
        from bids_recon.features import resolver_for

        check_captions(resolver_for(config.execution.bids_dir, config.workflow.stimuli), checked.stim_ids)

    def prepare(self, config: RunConfig) -> None:
        configured_model(config)

    def methods(self, config: RunConfig) -> str:
        diff, dec = self.settings(config), config.workflow.decoding
        return (
            f"Following Takagi & Nishimoto (2023), each stimulus was described by z, the VAE latent of the "
            f"diffusion model '{diff.model}' (image at {diff.latent_image_size} px, posterior mean times the VAE "
            f"scaling factor), and c, the text encoder's last hidden state averaged over the image's captions. "
            f"Decoders ({dec.methods()}) mapped {diff.z_roi} betas to z and {diff.c_roi} betas to c. "
            f"Reconstructions: z only (VAE decoding of decoded z); c only (text-to-image from decoded c); z+c "
            f"(img2img of the z image at strength {diff.strength}, conditioned on decoded c); DDIM {diff.steps} "
            f"steps, guidance {diff.guidance_scale} against the empty-caption embedding, {diff.n_samples} samples "
            f"per image with seeds {diff.seed}..{diff.seed + diff.n_samples - 1}. "
            + evaluation_methods(config.workflow.evaluate, diff.n_samples, "the decoded feature spaces for z and c")
        )

    def add_fetch_options(self, option: Any) -> None:
        option("--model", key="model", help=f"diffusion model (Hugging Face id; default: the configuration's, else "
                                            f"{DiffusionParams.model}); a local folder is not fetched")

    def downloads(self, params: DiffusionParams, layout: Layout,
                  report: Callable[[str], None] = print) -> list[FetchItem]:
        from bids_recon.generate.models import model_downloads

        model = params.model
        if Path(model).expanduser().exists() or model.startswith(("/", "./", "../", "~")):
            report(f"--model {model} is a local folder: nothing to fetch for it")
            return []
        return model_downloads(layout, model, self.fetch_group)
