"""An NSD-like session over the whole brain through the CLI: time and peak memory of the single-trial betas.

Writes (once) a BIDS dataset with fMRIPrep-like derivatives: one subject, one session of 12 runs x 226 volumes
(TR 1.333 s) on NSD's 1.8 mm grid (81 x 104 x 83), about 250,000 brain voxels, 62 trials per run (744, 248 images
shown 3 times), float32 ``.nii.gz`` runs (about 2.7 GB of time series in the brain). Then runs

    bids_recon DS OUT participant -d fmriprep=DS/derivatives/fmriprep --betas-only --nprocs 1 -w WORK

and samples the summed resident memory of the whole process tree every 0.2 s (``/proc``), next to the largest
single process's peak (``ru_maxrss`` of the children).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_wholebrain.py --root /tmp/wholebrain [--voxels 250000]

``--fit-only`` times ``estimate_session_betas`` in this process instead (``--in-memory``: the whole session held in
memory, the path before issue 22, for comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

GRID = (81, 104, 83)
AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])
RUNS, VOLUMES, TR, TRIALS, SOA, DURATION = 12, 226, 1.333, 62, 4.0, 3.0


def brain_mask(n_voxels: int) -> np.ndarray:
    """An ellipsoid of about ``n_voxels`` voxels centred in :data:`GRID`."""
    axes = [np.linspace(-1, 1, n) for n in GRID]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    radius2 = x**2 + y**2 + z**2
    threshold = np.sort(radius2.ravel())[min(n_voxels, radius2.size) - 1]
    return radius2 <= threshold


def write_dataset(root: Path, n_voxels: int, seed: int = 0) -> Path:
    """The dataset in ``root/ds`` (reused when present)."""
    import nibabel as nib
    import pandas as pd

    from bids_recon.glm.hrf import canonical_library, trial_regressors

    ds = root / "ds"
    done = ds / ".complete"
    if done.exists():
        return ds
    shutil.rmtree(ds, ignore_errors=True)
    rng = np.random.default_rng(seed)
    mask = brain_mask(n_voxels)
    n_brain = int(mask.sum())
    func = ds / "sub-01" / "ses-01" / "func"
    prep = ds / "derivatives" / "fmriprep" / "sub-01" / "ses-01" / "func"
    func.mkdir(parents=True)
    prep.mkdir(parents=True)
    (ds / "dataset_description.json").write_text(json.dumps({"Name": "whole-brain NSD-like session (simulated)",
                                                             "BIDSVersion": "1.10.0", "DatasetType": "raw"}))
    (ds / "participants.tsv").write_text("participant_id\nsub-01\n")
    (ds / "derivatives" / "fmriprep" / "dataset_description.json").write_text(json.dumps({
        "Name": "fMRIPrep (simulated)", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.1.1"}]}))
    images = np.repeat(np.arange(RUNS * TRIALS // 3), 3)
    rng.shuffle(images)
    baseline = rng.uniform(400, 1600, n_brain).astype(np.float32)
    signal = rng.random(n_brain) < 0.15
    weights = rng.normal(0, 3.0, (5, n_brain)).astype(np.float32)  # shared noise, percent of the baseline
    nib.openers.Opener.default_compresslevel = 1
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), AFFINE)
    for run in range(RUNS):
        stem = f"sub-01_ses-01_task-nsdcore_run-{run + 1:02d}"
        onsets = 6.0 + SOA * np.arange(TRIALS)
        events = pd.DataFrame({"onset": onsets, "duration": DURATION,
                               "trial_type": [f"img{i:04d}" for i in images[run * TRIALS:(run + 1) * TRIALS]]})
        events.to_csv(func / f"{stem}_events.tsv", sep="\t", index=False, float_format="%.3f")
        frame_times = np.arange(VOLUMES) * TR
        x = trial_regressors(canonical_library(), onsets, np.full(TRIALS, DURATION), frame_times)[0]
        amplitudes = rng.normal(1.0, 1.0, (TRIALS, int(signal.sum()))).astype(np.float32)
        shared = np.cumsum(rng.standard_normal((VOLUMES, 5)), axis=0).astype(np.float32) / 3
        psc = rng.standard_normal((VOLUMES, n_brain), dtype=np.float32) * np.float32(2.0)
        psc += shared @ weights
        psc[:, signal] += x.astype(np.float32) @ amplitudes
        data = np.zeros((*GRID, VOLUMES), dtype=np.float32)
        data[mask] = (baseline * (1 + psc / 100)).T
        del psc
        image = nib.Nifti1Image(data, AFFINE)
        image.header.set_xyzt_units("mm", "sec")
        image.header["pixdim"][4] = TR
        prep_bold = prep / f"{stem}_space-T1w_desc-preproc_bold.nii.gz"
        nib.save(image, prep_bold)
        del data, image
        raw_bold = func / f"{stem}_bold.nii.gz"
        raw_bold.symlink_to(os.path.relpath(prep_bold, func))
        sidecar = {"RepetitionTime": TR, "TaskName": "nsdcore"}
        (func / f"{stem}_bold.json").write_text(json.dumps(sidecar))
        (prep / f"{stem}_space-T1w_desc-preproc_bold.json").write_text(json.dumps({**sidecar, "StartTime": 0.0}))
        nib.save(mask_img, prep / f"{stem}_space-T1w_desc-brain_mask.nii.gz")
        confounds = pd.DataFrame(rng.standard_normal((VOLUMES, 8)) * 0.1,
                                 columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "csf",
                                          "white_matter"])
        confounds.to_csv(prep / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False)
        print(f"wrote run {run + 1}/{RUNS}", file=sys.stderr, flush=True)
    done.write_text(str(n_brain))
    return ds


class TreeMemory:
    """Summed resident memory (bytes) of a process and its descendants, sampled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in self._tree():
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                except OSError:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_cli(ds: Path, root: Path, nprocs: int) -> dict:
    out, work = root / "out", root / "work"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    command = [sys.executable, "-m", "bids_recon", str(ds), str(out), "participant", "-d",
               f"fmriprep={ds / 'derivatives' / 'fmriprep'}", "--betas-only", "--nprocs", str(nprocs), "-w", str(work)]
    start = time.perf_counter()
    process = subprocess.Popen(command)
    sampler = TreeMemory(process.pid)
    code = process.wait()
    wall = time.perf_counter() - start
    tree_peak = sampler.stop()
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    statmaps = sorted(out.rglob("*_statmap.nii.gz"))
    return {"command": " ".join(command[1:]), "exit": code, "wall_s": round(wall, 1),
            "peak_tree_rss_gb": round(tree_peak / 2**30, 2), "peak_process_rss_gb": round(largest / 2**30, 2),
            "statmaps": len(statmaps)}


def run_fit(ds: Path, root: Path, in_memory: bool) -> dict:
    from bids_recon.bids.layout import collect_inputs
    from bids_recon.glm import RunFiles, estimate_session_betas, intersect_masks

    inputs = collect_inputs(ds, ds / "derivatives" / "fmriprep", space="T1w", resolution=None)["01"]
    mask = intersect_masks([r.brain_mask for r in inputs.runs])
    files = [RunFiles(r.preproc_bold, r.events, r.confounds, r.repetition_time, "01", "01", r.run, r.task)
             for r in inputs.runs]
    store = None if in_memory else root / "store"
    start = time.perf_counter()
    result = estimate_session_betas(files, mask, stimuli="trial_type", store=store)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"in_memory": in_memory, "wall_s": round(wall, 1), "peak_rss_gb": round(peak / 2**30, 2),
            "n_voxels": int(result.betas[0].shape[1]), "noise_components": result.fit.n_noise_components}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--voxels", type=int, default=250_000)
    parser.add_argument("--nprocs", type=int, default=1)
    parser.add_argument("--fit-only", action="store_true")
    parser.add_argument("--in-memory", action="store_true")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ds = write_dataset(args.root, args.voxels)
    print(f"dataset ready in {time.perf_counter() - start:.0f} s: {ds}", file=sys.stderr)
    threads = {k: os.environ.get(k, "unset") for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    result = run_fit(ds, args.root, args.in_memory) if args.fit_only else run_cli(ds, args.root, args.nprocs)
    print(json.dumps({**result, "voxels": int((ds / ".complete").read_text()), "threads": threads,
                      "cpus": os.cpu_count()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
