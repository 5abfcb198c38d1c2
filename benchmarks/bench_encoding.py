"""Voxelwise encoding models (:func:`bids_recon.decoding.encoding.fit_encoding_models`) at a realistic size.

    python benchmarks/bench_encoding.py --size small                  # a quick check
    python benchmarks/bench_encoding.py --size nsd                    # NSD subj01: z and c, joint z+c
    python benchmarks/bench_encoding.py --size nsd --spaces z c zc25  # + one z_c space (32,000 features)

One synthetic problem per size, written once to memory-mapped ``.npy`` files (features are read by column blocks,
betas by voxel blocks, as the pipeline does): stimuli have latent causes ``S`` (100-d); each feature space is
``S A + noise`` (unit-variance noise per feature); repeat-averaged betas are ``S B + noise`` (half the voxels
with signal, SNR ~0.5 per stimulus average, the others noise). ``nsd``: 9,000 training and 1,000 test stimuli
(NSD subj01's repeat-averaged betas), 15,000 visual voxels (the size of nsdgeneral), z 6,400 features
(4 x 40 x 40), c 59,136 (77 x 768), z_c 32,000 (1,280 x 5 x 5: SD-1.4's mid block for a 40 x 40 latent);
13 alphas, GCV, analytic null, and the joint model of z and c with its three kernel weightings (equal, 0.9 on
each), as the pipeline's defaults.

Reported: wall time of the fit (kernels, eigendecompositions, per-voxel fits and scores), its peak anonymous
memory (``RssAnon``, sampled every 20 ms; memory-mapped feature pages the kernel can drop are left out) and peak
RSS, the median r of the signal and the noise voxels. Threads: ``--threads`` BLAS threads (threadpoolctl).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SIZES = {
    "small": dict(train=1000, test=200, voxels=2000, z=640, c=5000, zc25=3200),
    "nsd": dict(train=9000, test=1000, voxels=15000, z=6400, c=59136, zc25=32000),
}
LATENTS = 100


def make_problem(folder: Path, size: str, spaces: list[str], seed: int = 0) -> dict[str, Path]:
    """Write every feature space (stimuli, features) and the betas (stimuli, voxels) as .npy (float32)."""
    spec = SIZES[size]
    n = spec["train"] + spec["test"]
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, LATENTS)).astype(np.float32)
    paths = {}
    for name in [*spaces, "betas"]:
        width = spec["voxels"] if name == "betas" else spec[name]
        path = folder / f"{size}_{name}.npy"
        paths[name] = path
        if path.is_file():
            continue
        out = np.lib.format.open_memmap(path, "w+", np.float32, (n, width))
        for start in range(0, width, 4096):
            stop = min(width, start + 4096)
            mixing = rng.standard_normal((LATENTS, stop - start)).astype(np.float32) / np.sqrt(LATENTS)
            noise = rng.standard_normal((n, stop - start)).astype(np.float32)
            if name == "betas":  # first half: signal (SNR 0.5), second half: noise
                signal = (np.arange(start, stop) < width // 2).astype(np.float32)
                out[:, start:stop] = 0.5 * (latent @ mixing) * signal + noise
            else:
                out[:, start:stop] = latent @ mixing + noise
        out.flush()
        del out
    return paths


def _memory_gb(field: str) -> float:
    """A memory line of /proc/self/status (``RssAnon``, ``VmRSS``) in GB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--spaces", nargs="+", default=["z", "c"], choices=["z", "c", "zc25"])
    parser.add_argument("--no-joint", action="store_true", help="no variance partitioning")
    parser.add_argument("--mixes", nargs="*", type=float, default=[0.9],
                        help="weightings of the joint model besides equal weights (partition_mixes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "bids_recon_bench_encoding")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    from bids_recon.decoding.encoding import DEFAULT_ALPHAS, fit_encoding_models

    args.data.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    paths = make_problem(args.data, args.size, args.spaces)
    made = time.perf_counter() - started
    spec = SIZES[args.size]
    n_train = spec["train"]
    arrays = {k: np.load(p, mmap_mode="r") for k, p in paths.items()}
    betas = arrays.pop("betas")
    peak = {"anon": _memory_gb("RssAnon"), "rss": _memory_gb("VmRSS")}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak["anon"] = max(peak["anon"], _memory_gb("RssAnon"))
            peak["rss"] = max(peak["rss"], _memory_gb("VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with threadpool_limits(limits=args.threads):
        start = time.perf_counter()
        maps = fit_encoding_models({k: v[:n_train] for k, v in arrays.items()}, betas[:n_train],
                                   {k: v[n_train:] for k, v in arrays.items()}, betas[n_train:], DEFAULT_ALPHAS,
                                   joint=(args.spaces if not args.no_joint and len(args.spaces) > 1 else ()),
                                   joint_mixes=tuple(args.mixes))
        seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    half = spec["voxels"] // 2
    result = {
        "size": args.size, "spaces": args.spaces, "models": maps.models, "mixes": args.mixes, "threads": args.threads,
        "train": n_train, "test": spec["test"], "voxels": spec["voxels"],
        "features": {k: spec[k] for k in args.spaces}, "alphas": len(DEFAULT_ALPHAS),
        "seconds": round(seconds, 1), "data_seconds": round(made, 1),
        "peak_rss_anon_gb": round(peak["anon"], 2), "peak_rss_gb": round(peak["rss"], 2),
        "median_r_signal": {m: round(float(np.median(maps.r[k, :half])), 3) for k, m in enumerate(maps.models)},
        "median_r_noise": {m: round(float(np.median(maps.r[k, half:])), 3) for k, m in enumerate(maps.models)},
        "load": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
