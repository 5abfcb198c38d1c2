"""File-level steps of the beta stage: one run's GLM, the subject's mask, the session z-scoring."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.glm.singletrial import (
    fit_ols,
    load_confounds,
    load_events,
    lsa_design,
    percent_signal_change,
    zscore_by_group,
)
from bids_recon.glm.trials import assign_repeats_and_split, run_trials


def load_image(path: Path, ndim: int | None = None) -> nib.Nifti1Image:
    """Load a NIfTI image, failing with the file's name when it is missing, unreadable or of the wrong rank."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("image does not exist", path)
    try:
        img = nib.load(path)
        if ndim is not None and len(img.shape) != ndim and not (ndim == 3 and len(img.shape) == 4
                                                                   and img.shape[3] == 1):
            raise BadDataError(f"expected a {ndim}D image, got shape {img.shape}", path)
    except BadDataError:
        raise
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise BadDataError(f"cannot read NIfTI ({exc})", path) from exc
    return img


def same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image) -> bool:
    """True when two images share the 3D shape and affine."""
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=1e-3)


def intersect_masks(mask_paths: list[Path]) -> nib.Nifti1Image:
    """Brain mask common to all runs (voxel in every run's mask).

    Raises
    ------
    BadDataError
        Masks on different grids, or an empty intersection.
    """
    first = load_image(mask_paths[0], ndim=3)
    common = np.asarray(first.dataobj).reshape(first.shape[:3]) > 0
    for path in mask_paths[1:]:
        img = load_image(path, ndim=3)
        if not same_grid(first, img):
            raise BadDataError(f"brain mask grid differs from {Path(mask_paths[0]).name}", path)
        common &= np.asarray(img.dataobj).reshape(img.shape[:3]) > 0
    if not common.any():
        raise BadDataError("the runs' brain masks have no voxel in common", mask_paths[0])
    return nib.Nifti1Image(common.astype(np.uint8), first.affine)


@dataclass
class RunBetas:
    """Result of one run's single-trial GLM."""

    betas: np.ndarray  # (n_trials, n_voxels) percent signal change
    trials: pd.DataFrame
    design: pd.DataFrame
    n_unusable_voxels: int


def estimate_run_betas(
    bold_path: Path,
    mask_img: nib.Nifti1Image,
    events_path: Path,
    confounds_path: Path,
    repetition_time: float,
    subject: str,
    session: str | None,
    run: str | None,
    confound_columns: list[str],
    stimulus_column: str = "stim_file",
    hrf_model: str = "glover",
    drift_model: str = "cosine",
    high_pass_hz: float = 0.01,
) -> RunBetas:
    """Single-trial betas (LSA) of one run inside the brain mask.

    Returns
    -------
    RunBetas
        ``betas`` has shape ``(n_trials, n_mask_voxels)`` in percent signal change; voxels with NaN,
        a constant or a non-positive mean are set to 0 and counted in ``n_unusable_voxels``.
    """
    bold = load_image(bold_path, ndim=4)
    if not same_grid(bold, mask_img):
        raise BadDataError(f"BOLD grid {bold.shape[:3]} differs from the brain mask's {mask_img.shape[:3]}",
                           bold_path)
    n_volumes = bold.shape[3]
    mask = np.asarray(mask_img.dataobj) > 0
    try:
        data = np.asarray(bold.dataobj, dtype=np.float32)[mask].T  # (n_volumes, n_voxels)
    except Exception as exc:  # truncated gzip streams, short files
        raise BadDataError(f"cannot read BOLD data ({exc})", bold_path) from exc
    events = load_events(events_path, n_volumes, repetition_time)
    trials = run_trials(events, subject, session, run, stimulus_column)
    if trials.empty:
        raise BadDataError(f"no trial names a stimulus in column '{stimulus_column}'", events_path)
    confounds = load_confounds(confounds_path, confound_columns, n_volumes)
    stim_rows = events[stimulus_column].notna() & (events[stimulus_column].astype(str) != "")
    design = lsa_design(events[stim_rows].reset_index(drop=True), n_volumes, repetition_time, confounds,
                        hrf_model=hrf_model, drift_model=drift_model, high_pass_hz=high_pass_hz)
    psc, usable = percent_signal_change(data)
    betas = fit_ols(psc, design, len(trials))
    return RunBetas(betas=betas, trials=trials, design=design, n_unusable_voxels=int((~usable).sum()))


def combine_runs(
    betas: list[np.ndarray], trials: list[pd.DataFrame], test_min_repeats: int = 2, zscore: bool = True
) -> tuple[np.ndarray, pd.DataFrame]:
    """Stack runs in acquisition order, z-score per session, number repeats and assign the split.

    Parameters
    ----------
    betas : list of ndarray, each (n_trials_run, n_voxels)
    trials : list of pandas.DataFrame
        The matching trial tables.

    Returns
    -------
    betas : ndarray, shape (n_trials, n_voxels), float32
    trials : pandas.DataFrame
        The subject's trial table (see :data:`bids_recon.glm.TRIAL_COLUMNS`).
    """
    if len(betas) != len(trials) or not betas:
        raise ValueError("need one trial table per beta array, and at least one run")
    n_voxels = {b.shape[1] for b in betas}
    if len(n_voxels) != 1:
        raise BadDataError(f"runs have different voxel counts {sorted(n_voxels)}")
    stacked = np.concatenate(betas).astype(np.float32)
    table = pd.concat(trials, ignore_index=True)
    if zscore:
        stacked = zscore_by_group(stacked, table["session"].astype(str).to_numpy())
    return stacked, assign_repeats_and_split(table, test_min_repeats)


def betas_to_image(betas: np.ndarray, mask_img: nib.Nifti1Image) -> nib.Nifti1Image:
    """A 4D float32 image (one volume per trial) from ``(n_trials, n_voxels)`` betas inside ``mask_img``."""
    mask = np.asarray(mask_img.dataobj) > 0
    volume = np.zeros((*mask.shape, len(betas)), dtype=np.float32)
    volume[mask] = betas.T
    img = nib.Nifti1Image(volume, mask_img.affine)
    img.header.set_xyzt_units("mm")
    return img
