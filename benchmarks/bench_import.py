"""Time and memory of importing one full-size NSD session (``--betas nsd=``), from each stored form.

    OMP_NUM_THREADS=1 python benchmarks/bench_import.py [--trials 750] [--grid 81 104 83] [--roi-voxels 12000]

Writes one synthetic session as NSD distributes it (``betas_session01.nii.gz``: int16 = % x 300, X x Y x Z x
trials, zero outside an ellipsoid "brain" of about 45% of the grid; and ``.hdf5``: ``betas``, trials x Z x Y x X,
uncompressed), then, each in a fresh process, reads it with :meth:`bids_recon.glm.importers.nsd.NsdImporter.
read_session` into the ``.npy`` a session node writes: once inside ``--roi-voxels`` voxels (``voxels=rois``: the
streams ROIs), once inside the whole brain mask. Peak memory is the process's anonymous resident memory
(``RssAnon``, sampled every 5 ms; memory-mapped pages of the output are left out). Subject 01's grid and 750
trials per session are NSD's; the values are random, so the gzip stream is larger than NSD's own files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_combine import PeakMemory  # noqa: E402


def write_session(root: Path, grid: tuple[int, int, int], n_trials: int, seed: int = 0) -> dict:
    """One NSD-like session (both forms), its brain mask, responses.tsv; returns file sizes and times."""
    import h5py
    import nibabel as nib
    import pandas as pd

    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in grid], indexing="ij")
    brain = sum(a**2 for a in axes) < 0.95
    folder = root / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"
    folder.mkdir(parents=True)
    pp = root / "nsddata" / "ppdata" / "subj01"
    (pp / "func1pt8mm").mkdir(parents=True)
    (pp / "behav").mkdir(parents=True)
    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    nib.save(nib.Nifti1Image(brain.astype(np.int16), affine), pp / "func1pt8mm" / "brainmask.nii.gz")
    volume = np.zeros((*grid, n_trials), dtype=np.int16)
    volume[brain] = np.clip(rng.normal(0, 450, (int(brain.sum()), n_trials)), -32768, 32767).astype(np.int16)
    start = time.perf_counter()
    img = nib.Nifti1Image(volume, affine)
    img.header.set_data_dtype(np.int16)
    nib.save(img, folder / "betas_session01.nii.gz")
    write_nii = time.perf_counter() - start
    start = time.perf_counter()
    with h5py.File(folder / "betas_session01.hdf5", "w") as handle:
        handle.create_dataset("betas", data=np.ascontiguousarray(volume.transpose(3, 2, 1, 0)))
    write_h5 = time.perf_counter() - start
    runs = np.repeat(np.arange(1, 13), [63, 62] * 6)[:n_trials]
    pd.DataFrame({"SUBJECT": 1, "SESSION": 1, "RUN": runs, "TRIAL": np.arange(n_trials) + 1,
                  "73KID": rng.integers(1, 73001, n_trials)}).to_csv(pp / "behav" / "responses.tsv", sep="\t",
                                                                   index=False)
    return {"brain_voxels": int(brain.sum()), "nii_bytes": (folder / "betas_session01.nii.gz").stat().st_size,
            "hdf5_bytes": (folder / "betas_session01.hdf5").stat().st_size, "write_nii_s": write_nii,
            "write_hdf5_s": write_h5}


def read_once(root: Path, form: str, roi_voxels: int, out: Path) -> dict:
    """Read the session into a .npy inside ``roi_voxels`` voxels (0: the whole brain mask)."""
    from bids_recon.glm.importers import importer_for

    importer = importer_for(f"nsd={root}:file={form}")
    plan = importer.plan("01")
    brain = np.asarray(importer.brain_mask(plan).dataobj) > 0
    mask = brain
    if roi_voxels:
        keep = np.flatnonzero(brain.ravel())[:: max(1, int(brain.sum()) // roi_voxels)][:roi_voxels]
        mask = np.zeros(brain.size, dtype=bool)
        mask[keep] = True
        mask = mask.reshape(brain.shape)
    with PeakMemory() as peak:
        start = time.perf_counter()
        betas = importer.read_session(plan, plan.sessions[0], mask, out)
        seconds = time.perf_counter() - start
    return {"form": form, "voxels": int(mask.sum()), "seconds": seconds, "peak_rss_anon_gb": peak.peak_mb / 1024,
            "out_gb": out.stat().st_size / 1e9, "shape": list(betas.shape)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=750)
    parser.add_argument("--grid", type=int, nargs=3, default=(81, 104, 83))
    parser.add_argument("--roi-voxels", type=int, default=12000)
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "FORM", "VOXELS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        root, form, voxels = Path(args.child[0]), args.child[1], int(args.child[2])
        print(json.dumps(read_once(root, form, voxels, root / f"out_{form}_{voxels}.npy")))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        written = write_session(root, tuple(args.grid), args.trials)
        print(json.dumps(written))
        for form in ("nii", "hdf5"):
            for voxels in (args.roi_voxels, 0):
                proc = subprocess.run([sys.executable, __file__, "--child", str(root), form, str(voxels)],
                                      capture_output=True, text=True, check=True)
                print(proc.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
