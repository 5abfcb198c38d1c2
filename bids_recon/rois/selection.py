"""Voxel selection by reliability (``--voxel-selection``): keep the voxels of each ROI whose single-trial responses
repeat.

Reliability is NSD's noise-ceiling SNR (:func:`bids_recon.glm.noise_ceiling`) computed from the *training*
stimuli shown more than once (NSD shows most of its 10,000 images three times): the test stimuli's repeats are never
used, so that choosing voxels does not look at the responses the decoders are scored on. ``ncsnr>T`` keeps the
voxels above ``T``; ``top:K`` the ``K`` most reliable voxels of each ROI (the same order as the noise ceiling's,
which grows with NCSNR).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, UsageError
from bids_recon.rois.masks import check_roi_sizes
from bids_recon.rois.params import VoxelSelection, parse_voxel_selection

#: Training stimuli shown at least twice needed to estimate NCSNR.
MIN_REPEATED_STIMULI = 2
def training_ncsnr(betas: np.ndarray, trials: pd.DataFrame, columns: np.ndarray) -> np.ndarray:
    """NCSNR of the given beta columns from the repeated training stimuli only.

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_voxels)
        Z-scored single-trial betas (a memory map is read a block of voxels at a time).
    trials : pandas.DataFrame
        The trial table (``stim_id``, ``split``), rows aligned with ``betas``.
    columns : ndarray of int
        The voxels (columns of ``betas``) to rate.

    Raises
    ------
    BadDataError
        Fewer than :data:`MIN_REPEATED_STIMULI` training stimuli are shown twice or more (the message says what to
        do: NSD's training images repeat, a dataset whose training images are shown once cannot be selected so).
    """
    from bids_recon.glm.reliability import noise_ceiling

    train = (trials["split"].astype(str) == "train").to_numpy()
    stim = trials["stim_id"].astype(str).to_numpy()
    counts = pd.Series(stim[train]).value_counts()
    repeated = int((counts >= 2).sum())
    if repeated < MIN_REPEATED_STIMULI:
        raise BadDataError(
            f"--voxel-selection needs training stimuli shown at least twice to rate voxels ({repeated} are): the "
            "test stimuli's repeats are never used to choose voxels; leave the selection out for this dataset")
    rows = np.flatnonzero(train)
    columns = np.asarray(columns, dtype=np.int64)
    ncsnr = np.empty(len(columns), dtype=np.float32)
    block = max(1, (64 * 2**20) // (8 * max(1, len(rows))))
    for start in range(0, len(columns), block):
        chunk = columns[start:start + block]
        values = np.asarray(betas[:, chunk], dtype=np.float32)[rows]
        ncsnr[start:start + block] = noise_ceiling(values, stim[rows])[0]
    return np.nan_to_num(ncsnr, nan=0.0)


def select_voxels(masks: dict[str, np.ndarray], brain: np.ndarray, betas: np.ndarray, trials: pd.DataFrame,
                  selection: VoxelSelection) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Keep the reliable voxels of every ROI.

    Parameters
    ----------
    masks : dict
        ROI name -> boolean array (X, Y, Z) inside ``brain``.
    brain : ndarray of bool, shape (X, Y, Z)
        The brain mask whose voxels (C order) are the columns of ``betas``.
    betas, trials
        See :func:`training_ncsnr`.
    selection : VoxelSelection

    Returns
    -------
    masks : dict
        ROI name -> the selected voxels (boolean, X, Y, Z).
    report : dict
        ROI name -> ``{"VoxelsBefore", "VoxelsAfter", "Selection", "MedianNcsnrKept"}``.
    """
    brain = np.asarray(brain, dtype=bool)
    index = np.full(brain.shape, -1, dtype=np.int64)
    index[brain] = np.arange(int(brain.sum()))
    union = np.zeros(brain.shape, dtype=bool)
    for mask in masks.values():
        union |= mask & brain
    columns = index[union]
    scores = np.zeros(brain.shape, dtype=np.float32)
    scores[union] = training_ncsnr(betas, trials, columns)
    out, report = {}, {}
    for name, mask in masks.items():
        inside = mask & brain
        values = scores[inside]
        if selection.kind == "ncsnr":
            keep_values = values > selection.value
        else:
            k = min(int(selection.value), len(values))
            keep_values = np.zeros(len(values), dtype=bool)
            keep_values[np.argsort(-values, kind="stable")[:k]] = True
        kept = np.zeros(brain.shape, dtype=bool)
        kept[inside] = keep_values
        out[name] = kept
        report[name] = {"VoxelsBefore": int(inside.sum()), "VoxelsAfter": int(kept.sum()),
                        "Selection": selection.describe(),
                        "MedianNcsnrKept": float(np.median(values[keep_values])) if keep_values.any() else None}
    return out, report


def apply_voxel_selection(masks: dict[str, np.ndarray], brain_mask, params, betas_file=None, trials_file=None
                          ) -> dict[str, dict]:
    """Apply ``params.voxel_selection`` (``--voxel-selection``) to ``masks`` in place, then check the ROI sizes again.

    Parameters
    ----------
    masks : dict
        ROI name -> boolean array in ``brain_mask``'s grid (from :func:`bids_recon.rois.build_rois`).
    brain_mask : nibabel image
        The brain mask whose voxels are the betas' columns.
    params : RoiParams
    betas_file, trials_file : path, optional
        The z-scored betas (``.npy``) and their trial table; needed when a selection is set.

    Returns
    -------
    dict
        ROI name -> what it kept (see :func:`select_voxels`); empty without a selection.
    """
    from bids_recon.design.table import read_trials

    selection = parse_voxel_selection(params.voxel_selection)
    if selection is None:
        return {}
    if betas_file is None or trials_file is None:
        raise UsageError("--voxel-selection needs the betas and their trial table")
    kept, report = select_voxels(masks, np.asarray(brain_mask.dataobj) > 0, np.load(betas_file, mmap_mode="r"),
                                 read_trials(trials_file), selection)
    masks.update(kept)
    check_roi_sizes(masks, params.min_voxels)
    return report


__all__ = ["VoxelSelection", "apply_voxel_selection", "parse_voxel_selection", "select_voxels", "training_ncsnr"]
