"""Stand-ins of NSD-synthetic and NSD-Imagery, written into an NSD stand-in root as NSD publishes them.

The root is one ``bids_recon-sim OUT --layout nsd`` wrote (or any folder with
``nsddata/ppdata/subjNN/func1pt8mm/brainmask.nii.gz``: the grid, its affine and the voxels the betas fill). Betas are
``(n_betas, n_mask_voxels)`` float32 percent signal change, columns the brain mask's voxels in C order (as
:class:`bids_recon.sim.betas.BetaSet`); they are stored as NSD stores them: int16 = round(% x 300), 0 outside the
mask, ``.nii.gz`` X x Y x Z x betas or ``.hdf5`` ``betas`` betas x Z x Y x X. File names, folders and design
formats are those of :mod:`bids_recon.glm.importers.nsdexperiments` (whose docstring gives the sources).
A function API only (the ``bids_recon-sim`` command does not write these experiments).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon.features.resolvers.nsdexperiments import IMAGERY_CONCEPTS, IMAGERY_TARGETS
from bids_recon.glm.importers.nsdexperiments import IMAGERY_RUNS, IMAGERY_TRIALS_PER_RUN
from bids_recon.sim.betas import NSD_SCALE, _save

#: Cue letters of each NSD-Imagery stimulus set.
IMAGERY_LETTERS = {"A": [k for k, v in IMAGERY_TARGETS.items() if v[0] == "A"],
                   "B": [k for k, v in IMAGERY_TARGETS.items() if v[0] == "B"], "C": list(IMAGERY_CONCEPTS)}


def _grid(root: Path, subject: str) -> tuple[np.ndarray, np.ndarray]:
    path = Path(root) / "nsddata" / "ppdata" / f"subj{subject}" / "func1pt8mm" / "brainmask.nii.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not an NSD stand-in root (write one with bids_recon-sim OUT --layout nsd)")
    img = nib.load(path)
    return np.asarray(img.dataobj) > 0, np.asarray(img.affine)


def write_betas(root: Path, subject: str, betas: np.ndarray, folder: str, name: str,
                forms: tuple[str, ...] = ("nii",)) -> list[Path]:
    """``betas`` (n_betas, n_mask_voxels) as NSD's int16 x 300 files ``name.nii.gz`` / ``name.hdf5`` in
    ``nsddata_betas/ppdata/subjNN/func1pt8mm/<folder>/``."""
    import h5py

    mask, affine = _grid(root, subject)
    betas = np.asarray(betas, dtype=np.float32)
    if betas.ndim != 2 or betas.shape[1] != int(mask.sum()):
        raise ValueError(f"betas of shape {betas.shape}: expected (n_betas, {int(mask.sum())}) for sub-{subject}'s "
                         "brain mask")
    scaled = np.clip(np.rint(betas * NSD_SCALE), -32768, 32767).astype(np.int16)
    volume = np.zeros((*mask.shape, len(betas)), dtype=np.int16)
    volume[mask] = scaled.T
    out_dir = Path(root) / "nsddata_betas" / "ppdata" / f"subj{subject}" / "func1pt8mm" / folder
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if "nii" in forms:
        written.append(_save(volume, affine, out_dir / f"{name}.nii.gz"))
    if "hdf5" in forms:
        with h5py.File(out_dir / f"{name}.hdf5", "w") as handle:
            handle.create_dataset("betas", data=np.ascontiguousarray(volume.transpose(3, 2, 1, 0)))
        written.append(out_dir / f"{name}.hdf5")
    return written


def _brick(path: Path, images: np.ndarray) -> Path:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("imgBrick", data=np.asarray(images, dtype=np.uint8))
    return path


# -- NSD-synthetic ---------------------------------------------------------------------------------------------------


def synthetic_design(n_runs: int = 8, per_run: int = 93, n_images: int = 284, blanks: int = 2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A design like NSD-synthetic's: ``masterordering`` (n_runs * per_run, 1-based image numbers, the last trial
    of each run a one-back repeat of the one before) and ``stimpattern`` (1 x n_runs x slots: ``blanks`` blank slots
    a run, 1 where a stimulus trial is)."""
    rng = np.random.default_rng(seed)
    order = rng.integers(1, n_images + 1, size=(n_runs, per_run))
    order[:, -1] = order[:, -2]  # a one-back repeat
    pattern = np.zeros((1, n_runs, per_run + blanks), dtype=np.uint8)
    for run in range(n_runs):
        slots = np.sort(rng.choice(per_run + blanks, per_run, replace=False))
        pattern[0, run, slots] = 1
    return order.ravel(), pattern


def write_nsdsynthetic(root: Path, subject: str, betas: np.ndarray, order: np.ndarray,
                       stimpattern: np.ndarray | None = None, shared_images: np.ndarray | None = None,
                       colour_images: np.ndarray | None = None, forms: tuple[str, ...] = ("nii",)) -> list[Path]:
    """NSD-synthetic's files for one participant under the NSD stand-in ``root``.

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_mask_voxels)
        Percent signal change, rows in trial order.
    order : ndarray of int, shape (n_trials,)
        ``masterordering``: the 1-based image number of each trial (1..284; > 220: the participant's colour images).
    stimpattern : ndarray, shape (1, n_runs, n_slots), optional
        Where the stimulus trials are (written only when given).
    shared_images, colour_images : ndarray of uint8, shape (n, H, W, 3), optional
        ``nsdsynthetic_stimuli.hdf5`` (images 1..n) and ``nsdsynthetic_colorstimuli_subjNN.hdf5`` (221..).

    Returns
    -------
    list of Path
        Files written: betas, ``nsdsynthetic_expdesign.mat`` (MATLAB v5; ``masterordering`` 1 x n), stimuli.
    """
    from scipy.io import savemat

    root = Path(root)
    order = np.asarray(order, dtype=np.int64).ravel()
    if len(order) != len(betas):
        raise ValueError(f"{len(order)} trials in the order but {len(betas)} betas")
    written = write_betas(root, subject, betas, "nsdsyntheticbetas_fithrf_GLMdenoise_RR", "betas_nsdsynthetic",
                          forms)
    experiments = root / "nsddata" / "experiments" / "nsdsynthetic"
    experiments.mkdir(parents=True, exist_ok=True)
    design = {"masterordering": order.astype(float)[None, :]}
    if stimpattern is not None:
        design["stimpattern"] = np.asarray(stimpattern, dtype=float)
    savemat(experiments / "nsdsynthetic_expdesign.mat", design)  # the same order for every participant
    written.append(experiments / "nsdsynthetic_expdesign.mat")
    stimuli = root / "nsddata_stimuli" / "stimuli" / "nsdsynthetic"
    if shared_images is not None:
        written.append(_brick(stimuli / "nsdsynthetic_stimuli.hdf5", shared_images))
    if colour_images is not None:
        written.append(_brick(stimuli / f"nsdsynthetic_colorstimuli_subj{subject}.hdf5", colour_images))
    return written


# -- NSD-Imagery -----------------------------------------------------------------------------------------------------


def imagery_runs(seed: int = 0) -> dict[str, pd.DataFrame]:
    """Behavioural tables like NSD-Imagery's, by run name: 48 trials a run (each of its set's 6 targets 8 times,
    shuffled), columns ``SUBJECT SESSION RUN TRIAL CONDITION CUE`` (vision runs cue another target half the time).
    ``RUN`` numbers the runs in the betas' order."""
    rng = np.random.default_rng(seed)
    out = {}
    for number, name in enumerate(IMAGERY_RUNS, start=1):
        letters = IMAGERY_LETTERS[name[3]]
        targets = rng.permutation(np.repeat(letters, IMAGERY_TRIALS_PER_RUN // len(letters)))
        cues = targets.copy()
        if name.startswith("vis"):
            for k in np.flatnonzero(rng.random(len(cues)) < 0.5):
                cues[k] = rng.choice([x for x in letters if x != targets[k]])
        out[name] = pd.DataFrame({"SUBJECT": 0, "SESSION": 1, "RUN": number,
                                  "TRIAL": np.arange(1, len(targets) + 1), "CONDITION": targets, "CUE": cues})
    return out


def imagery_beta_rows(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per beta of NSD-Imagery's betas file, in its order: ``run_name``, ``TRIAL``, ``CONDITION``, ``CUE``,
    ``phase`` (an attention trial has two betas: ``cue`` then ``detection``)."""
    rows = []
    for name in IMAGERY_RUNS:
        table = runs[name].sort_values("TRIAL", kind="stable")
        phases = ("cue", "detection") if name.startswith("att") else ("",)
        for trial in table.itertuples(index=False):
            for phase in phases:
                rows.append({"run_name": name, "TRIAL": int(trial.TRIAL), "CONDITION": trial.CONDITION,
                             "CUE": trial.CUE, "phase": phase})
    return pd.DataFrame(rows)


def write_nsdimagery(root: Path, subject: str, betas: np.ndarray, runs: dict[str, pd.DataFrame] | None = None,
                     images: dict[str, np.ndarray] | None = None, forms: tuple[str, ...] = ("hdf5",)
                     ) -> tuple[list[Path], pd.DataFrame]:
    """NSD-Imagery's files for one participant under the NSD stand-in ``root``.

    Parameters
    ----------
    betas : ndarray, shape (n_betas, n_mask_voxels)
        Percent signal change in the betas file's order (:func:`imagery_beta_rows` of ``runs``: 720 rows).
    runs : dict, optional
        Run name -> behavioural table (default :func:`imagery_runs`); written as
        ``nsddata/bdata/nsdimagery/nsdimagery_subjNN_<run>.tsv``.
    images : dict, optional
        Cue letter -> uint8 image (H, W, 3), written as PNG under
        ``nsddata/experiments/nsdimagery/rawtargetimages/set{A,B}/`` with the target's file name.

    Returns
    -------
    files : list of Path
    beta_rows : pandas.DataFrame
        :func:`imagery_beta_rows`: what each row of ``betas`` is.
    """
    from PIL import Image

    root = Path(root)
    runs = runs if runs is not None else imagery_runs()
    beta_rows = imagery_beta_rows(runs)
    if len(beta_rows) != len(betas):
        raise ValueError(f"the runs have {len(beta_rows)} betas (attention trials two each) but {len(betas)} given")
    written = write_betas(root, subject, betas, "nsdimagerybetas_fithrf_GLMdenoise_RR", "betas_nsdimagery", forms)
    bdata = root / "nsddata" / "bdata" / "nsdimagery"
    bdata.mkdir(parents=True, exist_ok=True)
    for name, table in runs.items():
        table = table.assign(SUBJECT=int(subject)) if str(subject).isdigit() else table
        table.to_csv(bdata / f"nsdimagery_subj{subject}_{name}.tsv", sep="\t", index=False)
        written.append(bdata / f"nsdimagery_subj{subject}_{name}.tsv")
    folder = root / "nsddata" / "experiments" / "nsdimagery" / "rawtargetimages"
    for letter, pixels in (images or {}).items():
        stimulus_set, name = IMAGERY_TARGETS[letter]
        path = folder / f"set{stimulus_set}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
        written.append(path)
    return written, beta_rows


__all__ = ["IMAGERY_LETTERS", "imagery_beta_rows", "imagery_runs", "synthetic_design", "write_betas",
           "write_nsdimagery", "write_nsdsynthetic"]
