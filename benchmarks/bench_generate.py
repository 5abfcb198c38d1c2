"""Throughput of the diffusion generator's img2img step (the paper's z+c reconstruction), random weights.

On a GPU it builds the full SD-1.x architecture (UNet2DConditionModel with cross_attention_dim=768 and
sample_size=64, the SD-1.x VAE and CLIP ViT-L/14 text encoder sizes; 859.5 M UNet parameters) in fp16 with SDPA
attention; on a CPU (or with ``--tiny``) the tiny test model of :mod:`bids_recon.generate.testing`. Nothing is
downloaded. For each batch size it prints

- images/s of the whole img2img call (VAE encode, DDIM steps with classifier-free guidance, VAE decode), as
  bids_recon runs it (decoded c as prompt_embeds, an empty-caption embedding as negative_prompt_embeds);
- the UNet's achieved TFLOP/s (UNet forward alone at the same batch: 2 x batch for guidance; FLOPs counted by
  ``torch.utils.flop_counter``) and that rate as a fraction of the dense matmul rate measured on the same device
  in the same run (fp16 8192^3 on GPU, fp32 2048^3 on CPU).

Usage::

    python benchmarks/bench_generate.py                       # GPU when torch sees one, else CPU + tiny model
    python benchmarks/bench_generate.py --device cpu --steps 10 --batch-sizes 1 2 4 8 16
    python benchmarks/bench_generate.py --json out.json --channels-last
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any


def sd1_components(dtype: Any, device: str) -> dict[str, Any]:
    """Full-size SD-1.x UNet, VAE and text encoder with random weights (no tokenizer: embeddings are given)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from bids_recon.generate.testing import scheduler_config

    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, sample_size=64)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                        sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, vocab_size=49408, max_position_embeddings=77))
    parts = {"unet": unet, "vae": vae, "text_encoder": text}
    parts = {k: _to(v, device, dtype) for k, v in parts.items()}
    parts["scheduler"] = DDIMScheduler(**scheduler_config())
    return parts


def tiny(dtype: Any, device: str) -> dict[str, Any]:
    from bids_recon.generate.testing import condition_tiny, tiny_components

    parts = condition_tiny(tiny_components())
    return {k: (_to(v, device, dtype) if hasattr(v, "eval") else v) for k, v in parts.items()}


def _to(module: Any, device: str, dtype: Any) -> Any:
    import torch

    module = module.to(device)
    return (module if dtype == torch.float32 else module.to(dtype)).eval()


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(device: str, dtype: Any, repeats: int = 20) -> float:
    """Measured dense matmul rate (TFLOP/s) of this device: 8192^3 on GPU, 2048^3 on CPU."""
    import torch

    n = 8192 if device == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps = repeats if device == "cuda" else 3
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def unet_rate(unet: Any, batch: int, text_len: int, text_dim: int, device: str, dtype: Any,
              repeats: int) -> tuple[float, float]:
    """(FLOPs of one UNet forward at ``2 * batch``, achieved TFLOP/s over ``repeats`` forwards)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = int(unet.config.sample_size)
    x = torch.randn(2 * batch, unet.config.in_channels, size, size, device=device, dtype=dtype)
    emb = torch.randn(2 * batch, text_len, text_dim, device=device, dtype=dtype)
    t = torch.tensor(500, device=device)
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            unet(x, t, emb)
        flops = float(counter.get_total_flops())
        unet(x, t, emb)
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            unet(x, t, emb)
        sync(device)
    return flops, flops * repeats / (time.perf_counter() - start) / 1e12


def main(argv: list[str] | None = None) -> int:
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--tiny", action="store_true", help="the tiny test model even on a GPU")
    parser.add_argument("--full", action="store_true", help="the SD-1.x architecture even on a CPU (slow)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (strength 0.8 runs 80%% of them)")
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed img2img calls per batch size")
    parser.add_argument("--unet-repeats", type=int, default=10, help="timed UNet forwards per batch size")
    parser.add_argument("--channels-last", action="store_true", help="UNet and VAE in channels_last memory format")
    parser.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = parser.parse_args(argv)

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = torch.float16 if device == "cuda" else torch.float32
    use_tiny = args.tiny or (device == "cpu" and not args.full)
    parts = tiny(dtype, device) if use_tiny else sd1_components(dtype, device)
    if device == "cuda":
        from diffusers.models.attention_processor import AttnProcessor2_0

        parts["unet"].set_attn_processor(AttnProcessor2_0())
        torch.backends.cuda.matmul.allow_tf32 = True
    if args.channels_last:
        parts["unet"].to(memory_format=torch.channels_last)
        parts["vae"].to(memory_format=torch.channels_last)
    pipe = StableDiffusionImg2ImgPipeline(**parts, tokenizer=None, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    unet = parts["unet"]
    factor = 2 ** (len(parts["vae"].config.block_out_channels) - 1)
    size = int(unet.config.sample_size) * factor
    text_dim = int(parts["text_encoder"].config.hidden_size)
    n_params = sum(p.numel() for p in unet.parameters()) / 1e6
    peak = matmul_tflops(device, dtype)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    print(f"# device {device} ({name}), torch {torch.__version__}, dtype {str(dtype).split('.')[-1]}, "
          f"model {'tiny' if use_tiny else 'SD-1.x'} (UNet {n_params:.1f} M params), {size} px, "
          f"DDIM {args.steps} steps x strength {args.strength}, guidance {args.guidance}; "
          f"measured matmul rate {peak:.2f} TFLOP/s", flush=True)
    print("| batch | images/s | s/image | UNet GFLOP/forward | UNet TFLOP/s | % of matmul rate |")
    print("|---:|---:|---:|---:|---:|---:|")
    rows = []
    for batch in args.batch_sizes:
        gen = torch.Generator("cpu")
        image = torch.rand(batch, 3, size, size, device=device, dtype=dtype)
        prompt = torch.randn(batch, 77, text_dim, device=device, dtype=dtype)
        negative = torch.zeros_like(prompt)

        def call() -> None:
            pipe(image=image, prompt_embeds=prompt, negative_prompt_embeds=negative,  # noqa: B023
                 strength=args.strength, guidance_scale=args.guidance, num_inference_steps=args.steps,
                 generator=gen.manual_seed(0), output_type="np")  # noqa: B023

        try:
            call()  # warm-up (kernel selection, allocator)
            sync(device)
            start = time.perf_counter()
            for _ in range(args.repeats):
                call()
            sync(device)
            elapsed = (time.perf_counter() - start) / args.repeats
            flops, tflops = unet_rate(unet, batch, 77, text_dim, device, dtype, args.unet_repeats)
        except torch.OutOfMemoryError:
            print(f"| {batch} | out of memory | | | | |")
            break
        row = {"batch": batch, "images_per_s": batch / elapsed, "s_per_image": elapsed / batch,
               "unet_gflop_per_forward": flops / 1e9, "unet_tflops": tflops, "fraction_of_matmul": tflops / peak}
        rows.append(row)
        print(f"| {batch} | {row['images_per_s']:.3f} | {row['s_per_image']:.3f} | {row['unet_gflop_per_forward']:.1f} "
              f"| {tflops:.3f} | {100 * row['fraction_of_matmul']:.1f}% |", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": device, "name": name, "dtype": str(dtype), "tiny": use_tiny, "size": size,
                       "steps": args.steps, "strength": args.strength, "matmul_tflops": peak, "rows": rows,
                       "argv": sys.argv}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
