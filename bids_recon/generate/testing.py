"""Tiny random-weight Stable-Diffusion-style models, for tests and CPU benchmarks (no download).

The components have the SD-1.x architecture at a toy size: a UNet with two blocks (32, 64 channels,
cross-attention width 32), a two-block VAE (downsampling factor 2, 4 latent channels), a 5-layer CLIP text
encoder of width 32 and a CLIP tokenizer whose vocabulary holds the words it is given (so captions that
name different things get different tokens). :func:`save_tiny_model` writes a diffusers folder that
:func:`bids_recon.generate.models.resolve_model` loads exactly like a real model.

``shapes="sd"`` gives toy widths with SD-1.x's feature shapes, for benchmarks at the paper's sizes: a
four-block VAE (downsampling factor 8, so z is 4 x 40 x 40 = 6,400 numbers at 320 px), a one-layer text encoder of
width 768 (c is 77 x 768 = 59,136 numbers) and a UNet whose cross-attention reads 768-wide states.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Words always in the tiny vocabulary (besides the letters, which make any text tokenizable).
BASE_WORDS = ("a", "an", "the", "of", "on", "in", "at", "photo", "image", "picture", "with", "and")


def tiny_unet_config(cross_attention_dim: int = 32, sample_size: int = 16) -> dict[str, Any]:
    """Configuration of a toy ``UNet2DConditionModel`` (2 blocks, 32/64 channels)."""
    return {
        "block_out_channels": (32, 64), "layers_per_block": 1, "sample_size": sample_size, "in_channels": 4,
        "out_channels": 4, "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"), "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 8, "norm_num_groups": 32,
    }


#: Model shapes :func:`tiny_components` builds: ``toy`` (tests: downsampling 2, width 32) or ``sd`` (SD-1.x's
#: feature shapes at toy cost: downsampling 8, text width 768).
SHAPES = ("toy", "sd")


def tiny_vae_config(shapes: str = "toy") -> dict[str, Any]:
    """Configuration of a toy ``AutoencoderKL``: 2 blocks (downsampling factor 2) or, with ``shapes="sd"``, 4
    blocks (factor 8, as SD-1.x); 4 latent channels."""
    widths = (32, 64) if shapes == "toy" else (4, 8, 8, 16)
    return {
        "block_out_channels": widths, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "down_block_types": ("DownEncoderBlock2D",) * len(widths),
        "up_block_types": ("UpDecoderBlock2D",) * len(widths), "layers_per_block": 1,
        "norm_num_groups": 4 if shapes == "sd" else 32, "sample_size": 32 if shapes == "toy" else 320,
    }


def tiny_text_config(vocab_size: int, shapes: str = "toy") -> dict[str, Any]:
    """Configuration of a toy ``CLIPTextModel``: width 32, 5 layers, or, with ``shapes="sd"``, SD-1.x's width 768
    (12 heads) in one layer; 77 positions."""
    width, layers, heads = (32, 5, 4) if shapes == "toy" else (768, 1, 12)
    return {
        "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1, "hidden_size": width,
        "intermediate_size": 37 if shapes == "toy" else 768, "layer_norm_eps": 1e-05, "num_attention_heads": heads,
        "num_hidden_layers": layers, "vocab_size": vocab_size, "max_position_embeddings": 77, "projection_dim": width,
    }


def scheduler_config() -> dict[str, Any]:
    """The SD-1.x noise schedule, for a ``DDIMScheduler`` (``steps_offset=1`` as SD-1.x)."""
    return {
        "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
        "set_alpha_to_one": False, "steps_offset": 1, "num_train_timesteps": 1000,
    }


def _write_vocab(folder: Path, words: Iterable[str]) -> None:
    """A CLIP BPE vocabulary in which every given word is one token (merges built letter by letter)."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab = ["<|startoftext|>", "<|endoftext|>", "!"]  # bos 0, eos = pad 1, as in tiny_text_config
    vocab += letters + [f"{c}</w>" for c in letters]
    merges: list[str] = []
    known = set(vocab)
    for word in sorted({w for w in words if w}):
        token = word[0]
        for i, ch in enumerate(word[1:], start=1):
            piece = ch + ("</w>" if i == len(word) - 1 else "")
            merged = token + piece
            if merged not in known:
                merges.append(f"{token} {piece}")
                vocab.append(merged)
                known.add(merged)
            token = merged
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def words_of(texts: Iterable[str]) -> list[str]:
    """Lower-case alphanumeric words of some texts (to build a tiny vocabulary from captions)."""
    return sorted({w for t in texts for w in re.findall(r"[a-z0-9]+", str(t).lower())})


def tiny_components(vocab_size: int = 1000, seed: int = 0, cross_attention_dim: int = 32,
                    shapes: str = "toy") -> dict[str, Any]:
    """UNet, VAE, text encoder and DDIM scheduler of a toy SD model with random weights (no tokenizer).

    ``shapes`` is one of :data:`SHAPES`; ``sd`` sets the cross-attention width to 768 and the UNet's sample size to
    40 (320 px images), whatever ``cross_attention_dim`` says.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if shapes not in SHAPES:
        raise ValueError(f"shapes must be one of {', '.join(SHAPES)}, got {shapes!r}")
    torch.manual_seed(seed)
    unet_config = tiny_unet_config(cross_attention_dim)
    if shapes == "sd":  # half the toy widths: the benchmarks' reconstructions dominate their CPU time
        unet_config = {**tiny_unet_config(768, sample_size=40), "block_out_channels": (16, 32), "norm_num_groups": 16}
    unet = UNet2DConditionModel(**unet_config)
    vae = AutoencoderKL(**tiny_vae_config(shapes))
    text_encoder = CLIPTextModel(CLIPTextConfig(**tiny_text_config(vocab_size, shapes)))
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": DDIMScheduler(**scheduler_config())}


def save_tiny_model(folder: Path, words: Iterable[str] = (), seed: int = 0, shapes: str = "toy") -> Path:
    """Write a tiny random-weight SD pipeline (diffusers layout, safetensors) to ``folder``; return it.

    Parameters
    ----------
    folder : Path
        Created if needed; about 8 MB are written.
    words : iterable of str
        Words the tokenizer knows as single tokens (e.g. :func:`words_of` the captions).
    seed : int
        Seed of the random weights.
    shapes : str
        ``toy`` (about 8 MB) or ``sd`` (SD-1.x's feature shapes, about 20 MB; :data:`SHAPES`).
    """
    from diffusers import StableDiffusionImg2ImgPipeline
    from transformers import CLIPTokenizer

    folder = Path(folder)
    tok_dir = folder / "_tokenizer_src"
    tok_dir.mkdir(parents=True, exist_ok=True)
    _write_vocab(tok_dir, [*BASE_WORDS, *words])
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77,
                              pad_token="<|endoftext|>")
    parts = condition_tiny(tiny_components(vocab_size=len(tokenizer), seed=seed, shapes=shapes))
    pipe = StableDiffusionImg2ImgPipeline(**parts, tokenizer=tokenizer, safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    for f in tok_dir.iterdir():
        f.unlink()
    tok_dir.rmdir()
    return folder


def condition_tiny(components: dict[str, Any]) -> dict[str, Any]:
    """Rescale random weights so that features depend on the input as a trained model's do (in place).

    At PyTorch's default initialisation a toy VAE's latent and a toy CLIP's hidden states are almost constant
    (< 1% of their variance depends on the image or the words), which makes them useless as decoding targets in
    tests. Token embeddings get unit scale (they dominate the position embeddings, as in a trained CLIP) and the
    VAE encoder's biases are zeroed (the latent follows the image instead of a constant offset).
    """
    import torch

    with torch.no_grad():
        encoder = components["text_encoder"]
        embeddings = encoder.text_model.embeddings if hasattr(encoder, "text_model") else encoder.embeddings
        embeddings.token_embedding.weight.normal_(0.0, 1.0)
        for module in components["vae"].encoder.modules():
            if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
                module.bias.zero_()
    return components
