"""Memory of the stage after the GLM: stack runs, z-score per session, noise ceiling, an ROI decoder's input.

    OMP_NUM_THREADS=1 python benchmarks/bench_combine.py [--trials 9000] [--voxels 30000] [--modes whole,blocked]

Compares, each in a fresh process, on the same per-run beta files (float32 .npy, as the GLM stage writes them):

- ``whole``: what bids_recon did up to 0.1.0's first releases: load every run, stack, z-score and compute the
  noise ceiling on the whole (n_trials, n_voxels) array at once, then select the ROI's columns of the
  training trials from the loaded array;
- ``blocked``: the current code: :func:`bids_recon.glm.combine_runs` with ``out_file`` (memory-mapped runs,
  z-scored a block of voxels at a time into a .npy), :func:`bids_recon.glm.noise_ceiling` by blocks, and the
  decoder's input read from the memory map (ROI columns only).

Peak memory is the process's anonymous resident memory (``RssAnon`` in /proc/self/status, sampled every 5 ms):
memory-mapped file pages are left out, since the kernel can drop them whenever it needs the room.
Data: NSD-like, every stimulus shown 3 times, 10% of them the test set, 12 sessions of 12 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

N_SESSIONS, RUNS_PER_SESSION, ROI_VOXELS = 12, 12, 5000


def _rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """Sample RssAnon in a thread; ``peak_mb`` after the ``with`` block."""

    def __enter__(self) -> PeakMemory:
        self.peak_mb, self._stop = _rss_anon_mb(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, _rss_anon_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_anon_mb())


def make_data(folder: Path, n_trials: int, n_voxels: int) -> None:
    """Per-run beta files and trial tables (every stimulus shown 3 times, in random order; 10% are test)."""
    rng = np.random.default_rng(0)
    stims = rng.permutation(np.repeat(np.arange(n_trials // 3), 3))
    runs = np.array_split(np.arange(len(stims)), N_SESSIONS * RUNS_PER_SESSION)
    signal = rng.standard_normal((n_trials // 3, 1)).astype(np.float32)
    for k, rows in enumerate(runs):
        betas = rng.standard_normal((len(rows), n_voxels), dtype=np.float32) + signal[stims[rows]]
        np.save(folder / f"run{k:03d}.npy", betas)
        names = [f"s{s}.png" for s in stims[rows]]
        table = pd.DataFrame({
            "subject": "01", "session": f"{k // RUNS_PER_SESSION + 1:02d}", "run": f"{k % 12 + 1:02d}",
            "trial_index": np.arange(len(rows)), "onset": 4.0 * np.arange(len(rows)), "duration": 3.0,
            "stim_id": names, "stim_file": names, "repeat": 0,
            "split": np.where(stims[rows] < n_trials // 30, "test", "train"),
        })
        table.to_csv(folder / f"run{k:03d}.tsv", sep="\t", index=False)


def _training_rows(table: pd.DataFrame) -> np.ndarray:
    return (table["split"] == "train").to_numpy()


def run_mode(mode: str, folder: Path) -> dict:
    from bids_recon.design import assign_repeats_and_split, read_trials
    from bids_recon.glm import combine_runs, noise_ceiling, zscore_by_group

    files = sorted(folder.glob("run*.npy"))
    trials = [read_trials(f.with_suffix(".tsv")) for f in files]
    n_voxels = np.load(files[0], mmap_mode="r").shape[1]
    roi = np.arange(0, n_voxels, max(1, n_voxels // ROI_VOXELS))[:ROI_VOXELS]  # scattered, as in a brain mask
    start = time.perf_counter()
    with PeakMemory() as memory:
        if mode == "whole":
            stacked = np.concatenate([np.load(f) for f in files])
            table = assign_repeats_and_split(pd.concat(trials, ignore_index=True), split_from_events=True)
            stacked = zscore_by_group(stacked, table["session"].to_numpy(str))
            np.save(folder / "whole.npy", stacked)
            ncsnr, _ = noise_ceiling(stacked, table["stim_id"].to_numpy(str), 3, block_voxels=stacked.shape[1])
            x = stacked[_training_rows(table)][:, roi]  # the old decoder input: whole-brain rows, then the ROI
        else:
            maps = [np.load(f, mmap_mode="r") for f in files]
            stacked, table = combine_runs(maps, trials, split_from_events=True, out_file=folder / "blocked.npy")
            ncsnr, _ = noise_ceiling(stacked, table["stim_id"].to_numpy(str), 3)
            x = np.asarray(stacked[:, roi])[_training_rows(table)]  # train_and_decode: the ROI, then rows
    seconds = time.perf_counter() - start
    return {"mode": mode, "seconds": round(seconds, 2), "peak_rss_anon_mb": round(memory.peak_mb),
            "betas_gb": round(stacked.nbytes / 1e9, 2), "roi_input_mb": round(x.nbytes / 1e6),
            "median_ncsnr": round(float(np.median(ncsnr)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=9000)
    parser.add_argument("--voxels", type=int, default=30000)
    parser.add_argument("--modes", default="whole,blocked", help="comma-separated: whole, blocked")
    parser.add_argument("--mode", choices=["whole", "blocked"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.folder)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        make_data(Path(tmp), args.trials, args.voxels)
        print(f"{args.trials} trials x {args.voxels} voxels in {N_SESSIONS * RUNS_PER_SESSION} run files, "
              f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
        print("| mode | seconds | peak RssAnon (MB) | betas (GB) | ROI input (MB) | median NCSNR |")
        print("|---|---|---|---|---|---|")
        for mode in args.modes.split(","):
            proc = subprocess.run([sys.executable, __file__, "--mode", mode, "--folder", tmp], capture_output=True,
                                  text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"| {r['mode']} | {r['seconds']} | {r['peak_rss_anon_mb']} | {r['betas_gb']} | "
                  f"{r['roi_input_mb']} | {r['median_ncsnr']} |")


if __name__ == "__main__":
    main()
