"""Ridge decoders side by side: bids_recon's EigenRidge, himalaya, scikit-learn and a plain numpy floor.

    python benchmarks/bench_ridge.py --size mid                       # all solvers, one BLAS thread
    python benchmarks/bench_ridge.py --size paper --solvers eigen-gcv --threads 2 --eigh-threads 1

One synthetic decoding problem per size, written once to .npy files and read by every solver, each in its own
process (so that its peak memory is its own):

- stimuli have latent causes ``S`` (100-d); single trials of a stimulus are ``S M + noise`` over the voxels
  (single-trial SNR ~0.3-0.6 per voxel, as NSD betas); targets are ``S A`` plus target-specific noise (some
  targets decodable, some not), one row per stimulus;
- every training stimulus is shown up to 3 times (trials in random order, as NSD); test stimuli 3 times,
  their betas averaged before decoding, as bids_recon does;
- ``mid``: 6,000 trials (2,000 stimuli) x 3,000 voxels -> 6,400 targets; ``paper``: 25,000 trials (9,000
  stimuli) x 6,000 voxels -> 59,136 targets (NSD subj01, early visual -> c); 9 alphas.

Solvers (inputs standardised by their training mean and sd, targets centred, alpha per target, refit on all
training trials):

- ``eigen-gcv`` / ``eigen-loo`` / ``eigen-kfold``: :class:`bids_recon.decoding.solver.EigenRidge` (targets per
  stimulus, memory-mapped, never expanded per trial; alpha by GCV, exact leave-one-out or 5 contiguous folds);
- ``himalaya-ridgecv`` / ``himalaya-kernelridgecv``: himalaya 5-fold contiguous CV (numpy backend), scored by R²,
  as bids_recon's decoders used to run (``fit_ridge_decoder`` used RidgeCV when trials >= voxels);
- ``sklearn-ridgecv``: ``sklearn.linear_model.RidgeCV(alpha_per_target=True)``, its efficient leave-one-out;
- ``numpy-floor``: one eigendecomposition of X'X, exact leave-one-out per target from the eigenbasis, refit:
  plain numpy on targets expanded per trial, all targets at once.

Reported per solver: wall time of the fit and the test predictions (not the loading), peak anonymous memory
(``RssAnon``, sampled every 5 ms: memory-mapped file pages the kernel can drop are left out) and peak RSS, and
the held-out R² on the test stimuli (mean over targets of 1 - SSE / SS around the test mean).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {
    "tiny": dict(trials=600, voxels=300, targets=640, stimuli=200, test=60),
    "mid": dict(trials=6000, voxels=3000, targets=6400, stimuli=2000, test=300),
    "paper": dict(trials=25000, voxels=6000, targets=59136, stimuli=9000, test=1000),
}
ALPHAS = np.logspace(2, 6, 9).tolist()
SOLVERS = ["eigen-gcv", "eigen-loo", "eigen-kfold", "himalaya-ridgecv", "himalaya-kernelridgecv", "sklearn-ridgecv",
           "numpy-floor"]
LATENTS = 100


def make_problem(folder: Path, size: str, seed: int = 0) -> dict:
    """Write x_train (trials, voxels), rows (trials,), features (stimuli, targets) and the test set as .npy."""
    spec = SIZES[size]
    rng = np.random.default_rng(seed)
    n_stim, n_test, v, t = spec["stimuli"], spec["test"], spec["voxels"], spec["targets"]
    latents = rng.standard_normal((n_stim + n_test, LATENTS)).astype(np.float32)
    snr = rng.uniform(0.3, 0.6, v).astype(np.float32)
    mixing = (rng.standard_normal((LATENTS, v)) / np.sqrt(LATENTS) * snr).astype(np.float32)
    # trials: each training stimulus up to 3 times (the first ``trials`` of 3 x stimuli, shuffled)
    rows = rng.permutation(np.tile(np.arange(n_stim), 3))[:spec["trials"]]
    x = np.lib.format.open_memmap(folder / "x_train.npy", "w+", np.float32, (len(rows), v))
    for start in range(0, len(rows), 2000):
        block = rows[start:start + 2000]
        x[start:start + len(block)] = latents[block] @ mixing + rng.standard_normal((len(block), v), np.float32)
    x.flush()
    np.save(folder / "rows.npy", rows)
    test_x = sum(latents[n_stim:] @ mixing + rng.standard_normal((n_test, v), np.float32) for _ in range(3)) / 3
    np.save(folder / "x_test.npy", test_x.astype(np.float32))
    loading = (rng.standard_normal((LATENTS, t)) / np.sqrt(LATENTS)).astype(np.float32)
    noise_sd = rng.uniform(0.1, 1.0, t).astype(np.float32)  # per target: from well to barely decodable
    for name, first, count in (("features", 0, n_stim), ("test_features", n_stim, n_test)):
        f = np.lib.format.open_memmap(folder / f"{name}.npy", "w+", np.float32, (count, t))
        for start in range(0, count, 500):
            stop = min(count, start + 500)
            f[start:stop] = (latents[first + start:first + stop] @ loading
                             + noise_sd * rng.standard_normal((stop - start, t), np.float32))
        f.flush()
        del f
    return {"trials": int(len(rows)), "stimuli": n_stim, "voxels": v, "targets": t, "test": n_test}


def _standardise(x: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1
    return (x - mean) / sd, (x_test - mean) / sd


def _floor(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Plain numpy: eigh of X'X, exact LOO per target from the eigenbasis, refit; all targets at once."""
    x, x_test = _standardise(x, x_test)
    y_mean = y.mean(0)
    y = y - y_mean
    n = len(x)
    lam, v = np.linalg.eigh((x.T @ x).astype(np.float64))
    keep = lam > lam[-1] * 1e-10
    lam, v = lam[keep], v[:, keep].astype(np.float32)
    u = (x @ v) / np.sqrt(lam).astype(np.float32)  # left singular vectors
    z = u.T @ y
    best_error = np.full(y.shape[1], np.inf)
    best = np.zeros(y.shape[1])
    for alpha in alphas:
        shrink = (lam / (lam + alpha)).astype(np.float32)
        leverage = (u**2) @ shrink + 1 / n
        error = (((y - u @ (z * shrink[:, None])) / (1 - leverage)[:, None]) ** 2).sum(0)
        better = error < best_error
        best_error[better], best[better] = error[better], alpha
    coef = (np.sqrt(lam)[:, None] / (lam[:, None] + best[None, :])).astype(np.float32) * z
    return x_test @ (v @ coef) + y_mean


def run_solver(name: str, folder: Path, eigh_threads: int | None) -> dict:
    """Fit one solver on the problem in ``folder``; time, memory and held-out R²."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_combine import PeakMemory

    alphas = np.asarray(ALPHAS)
    x = np.load(folder / "x_train.npy")
    rows = np.load(folder / "rows.npy")
    x_test = np.load(folder / "x_test.npy")
    features = np.load(folder / "features.npy", mmap_mode="r")
    test_features = np.load(folder / "test_features.npy")
    expanded = None if name.startswith("eigen") else np.asarray(features)[rows]  # others need per-trial targets
    start = time.perf_counter()
    with PeakMemory() as memory:
        if name.startswith("eigen"):
            from bids_recon.decoding.solver import EigenRidge

            solver = EigenRidge(x, alphas, target_rows=rows, cv=name.split("-")[1], eigh_threads=eigh_threads)
            predictions = solver.fit(features, x_new=x_test, return_weights=True).predictions
        elif name.startswith("himalaya"):
            from himalaya.backend import set_backend
            from himalaya.kernel_ridge import KernelRidgeCV
            from himalaya.ridge import RidgeCV
            from himalaya.scoring import r2_score
            from sklearn.model_selection import KFold

            set_backend("numpy")
            xs, xt = _standardise(x, x_test)
            y_mean = expanded.mean(0)
            params = dict(alphas=alphas, cv=KFold(5), solver_params={"score_func": r2_score})
            model = (RidgeCV(**params) if name == "himalaya-ridgecv" else
                     KernelRidgeCV(kernel="linear", **params))
            model.fit(xs, expanded - y_mean)
            predictions = np.asarray(model.predict(xt)) + y_mean
        elif name == "sklearn-ridgecv":
            from sklearn.linear_model import RidgeCV as SkRidgeCV

            xs, xt = _standardise(x, x_test)
            model = SkRidgeCV(alphas=alphas, alpha_per_target=True, fit_intercept=True).fit(xs, expanded)
            predictions = model.predict(xt)
        else:
            predictions = _floor(x, expanded, x_test, alphas)
    seconds = time.perf_counter() - start
    residual = ((test_features - predictions) ** 2).sum(0)
    total = ((test_features - test_features.mean(0)) ** 2).sum(0)
    r2 = 1 - residual / total
    return {"solver": name, "seconds": round(seconds, 1), "peak_anon_gb": round(memory.peak_mb / 1024, 2),
            "max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "heldout_r2": round(float(r2.mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="mid")
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=SOLVERS)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads of each solver's process")
    parser.add_argument("--eigh-threads", type=int, default=None,
                        help="BLAS threads for EigenRidge's eigendecomposition only (default: as --threads)")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the problem here (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--solver", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.solver:
        print(json.dumps(run_solver(args.solver, args.data_dir, args.eigh_threads)))
        return
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        shape = make_problem(folder, args.size)
        print(f"problem {args.size}: {shape} ({time.perf_counter() - start:.0f} s to make); alphas "
              f"{ALPHAS[0]:g}..{ALPHAS[-1]:g} ({len(ALPHAS)}); BLAS threads {args.threads}, eigh threads "
              f"{args.eigh_threads or args.threads}; load average before {os.getloadavg()[0]:.2f}", flush=True)
        env = {**os.environ, **{k: str(args.threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                  "MKL_NUM_THREADS")}}
        results = []
        print("| solver | seconds | peak RssAnon (GB) | peak RSS (GB) | held-out R² | load avg |")
        print("|---|---|---|---|---|---|")
        for name in args.solvers:
            command = [sys.executable, __file__, "--solver", name, "--data-dir", str(folder)]
            if args.eigh_threads:
                command += ["--eigh-threads", str(args.eigh_threads)]
            proc = subprocess.run(command, capture_output=True, text=True, env=env)
            if proc.returncode:
                print(f"| {name} | failed: {proc.stderr.strip().splitlines()[-1]} |", flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["load"] = round(os.getloadavg()[0], 2)
            results.append(r)
            print(f"| {r['solver']} | {r['seconds']} | {r['peak_anon_gb']} | {r['max_rss_gb']} | {r['heldout_r2']} "
                  f"| {r['load']} |", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"size": args.size, "shape": shape, "threads": args.threads,
                                             "eigh_threads": args.eigh_threads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
