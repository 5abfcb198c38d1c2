"""Time and memory of the standard metrics (bids_recon.evaluate.standard), network by network.

    OMP_NUM_THREADS=1 python benchmarks/bench_metrics.py [--items 50] [--device cpu|cuda] [--clip tiny|large]
                                                         [--batch-size 32] [--real-weights]

Without ``--real-weights`` the networks are random-weight stand-ins of the real architectures written to a
temporary TORCH_HOME / HF_HOME (:func:`bids_recon.evaluate.random_weights.write_random_weights`; ``--clip large``
gives CLIP a ViT-L/14-sized vision tower, ~1.2 GB, for representative timings); the cost of a network does not
depend on its weights. With ``--real-weights`` the caches of the environment are used (fill them with
bids_recon-fetch). Images: ``--items`` NSD-sized (425 px, uint8) structured images and noisy reconstructions.

For each metric group the seen images' features are computed afresh (no cache), so a row's time is what one
``compute_standard_metrics`` call of that group costs for ``--items`` reconstructions and their images.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

GROUPS = {"pixcorr,ssim": "pixel", "alexnet2,alexnet5": "alexnet", "inceptionv3": "inception_v3", "clip": "clip",
          "effnet": "efficientnet_b1", "swav": "swav"}


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:425, 0:425] / 425
    truth = np.empty((n, 425, 425, 3), np.uint8)
    for k in range(n):
        angle, freq = rng.uniform(0, np.pi), rng.uniform(1, 8)
        for c in range(3):
            truth[k, :, :, c] = 127.5 + 127.5 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + c)
    recon = np.clip(truth + rng.normal(0, 30, truth.shape), 0, 255).astype(np.uint8)
    return recon, truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clip", default="tiny", choices=["tiny", "large"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--real-weights", action="store_true")
    args = parser.parse_args(argv)
    tmp = None
    if not args.real_weights:
        tmp = tempfile.TemporaryDirectory(prefix="bench_metrics_")
        os.environ["TORCH_HOME"], os.environ["HF_HOME"] = f"{tmp.name}/torch", f"{tmp.name}/hf"
        os.environ.pop("HF_HUB_CACHE", None)
        from bids_recon.evaluate.random_weights import write_random_weights

        write_random_weights(Path(tmp.name) / "torch", Path(tmp.name) / "hf", clip=args.clip)
    import torch

    from bids_recon.evaluate.standard import StandardEvaluator

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    recon, truth = _images(args.items)
    start = time.perf_counter()
    everything = StandardEvaluator(device=args.device, batch_size=args.batch_size)
    load_s = time.perf_counter() - start
    rows = []
    for metrics, network in GROUPS.items():
        nets = {network: everything.networks[network]} if network in everything.networks else {}
        evaluator = StandardEvaluator(metrics, device=args.device, batch_size=args.batch_size, networks=nets)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        table = evaluator.evaluate(recon, truth).table
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rows.append({"metrics": metrics, "seconds": round(seconds, 2),
                     "ms_per_image": round(1000 * seconds / (2 * args.items), 1),
                     "cuda_peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                     if args.device.startswith("cuda") else None,
                     "values": {m: round(float(v), 4) for m, v in zip(table["metric"], table["value"], strict=True)}})
    result = {"items": args.items, "device": args.device, "clip": args.clip, "batch_size": args.batch_size,
              "threads": torch.get_num_threads(), "load_seconds": round(load_s, 2), "groups": rows,
              "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
              "real_weights": args.real_weights}
    print(json.dumps(result, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
