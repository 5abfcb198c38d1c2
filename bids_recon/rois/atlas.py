"""Visual ROIs in the BOLD grid: from a TemplateFlow atlas (by label names) or from user masks."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, BidsReconError
from bids_recon.io import read_tsv
from bids_recon.rois.labels import split_roi_spec
from bids_recon.rois.masks import (
    MIN_ROI_INSIDE,
    RoiSource,
    check_atlas_space,
    check_roi_fits,
    check_roi_sizes,
    grid_text,
    load_mask_file,
    resample_mask,
    same_grid,
    union_of,
    voxels_lost,
)
from bids_recon.rois.params import RoiParams, mask_specs
from bids_recon.rois.templates import templateflow_file

LOGGER = logging.getLogger("bids_recon.rois")

def load_label_table(path: Path) -> pd.DataFrame:
    """Read an atlas label table (``index``, ``name``)."""
    table = read_tsv(path)
    if not {"index", "name"} <= set(table.columns):
        raise BadDataError("atlas label table needs 'index' and 'name' columns", path)
    return table


def masks_from_atlas(
    atlas: np.ndarray, labels: pd.DataFrame, definitions: dict[str, list[str]]
) -> dict[str, np.ndarray]:
    """Build boolean ROI masks from atlas label names.

    Parameters
    ----------
    atlas : ndarray of int, shape (X, Y, Z)
        Label image (dseg).
    labels : pandas.DataFrame
        ``index`` and ``name`` of every label.
    definitions : dict
        ROI name -> label names that make it (matched exactly, case-insensitively).

    Returns
    -------
    dict
        ROI name -> boolean mask, shape (X, Y, Z).
    """
    by_name = {str(n).strip().lower(): int(i) for i, n in zip(labels["index"], labels["name"], strict=True)}
    masks = {}
    for roi, names in definitions.items():
        unknown = [n for n in names if n.strip().lower() not in by_name]
        if unknown:
            raise BadDataError(f"ROI '{roi}': label(s) {unknown} are not in the atlas's label table")
        indices = [by_name[n.strip().lower()] for n in names]
        masks[roi] = np.isin(atlas, indices)
    return masks


def atlas_rois(
    brain_mask: nib.Nifti1Image,
    definitions: dict[str, list[str]],
    params: RoiParams | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """ROI masks in the BOLD grid from a TemplateFlow atlas, restricted to the brain mask.

    Parameters
    ----------
    brain_mask : nibabel image
        The BOLD grid's brain mask.
    definitions : dict
        ROI name -> atlas label names.
    params : RoiParams, optional
        Which atlas (template, resolution, atlas, desc, label-table template); the defaults when omitted.

    Returns
    -------
    masks : dict
        ROI name -> boolean array in the brain mask's grid, shape (X, Y, Z).
    sources : dict
        ``atlas`` and ``labels`` -> the TemplateFlow files used.
    """
    unmasked, files = _atlas_masks(brain_mask, definitions, params or RoiParams())
    brain = np.asarray(brain_mask.dataobj).reshape(brain_mask.shape[:3]) > 0
    return {name: m & brain for name, m in unmasked.items()}, files


def _atlas_masks(brain_mask: nib.Nifti1Image, definitions: dict[str, list[str]], p: RoiParams
                 ) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """The atlas ROIs resampled to the brain mask's grid, before the brain mask (voxels outside it are counted)."""
    atlas_path = templateflow_file(p.template, resolution=p.resolution, atlas=p.atlas, desc=p.atlas_desc,
                                   suffix="dseg", extension=".nii.gz")
    table_path = templateflow_file(p.label_table_template, atlas=p.atlas, suffix="dseg", extension=".tsv")
    atlas_img = nib.load(atlas_path)
    atlas_data = resample_mask(atlas_img, brain_mask).astype(np.int64)
    files = {"atlas": atlas_path, "labels": table_path}
    return masks_from_atlas(atlas_data, load_label_table(table_path), definitions), files


def user_roi(path: Path, brain_mask: nib.Nifti1Image, label: int | str | None = None,
             brain_source: Path | None = None) -> np.ndarray:
    """A user label volume resampled to the BOLD (or imported betas') grid: the voxels of the chosen labels, within
    the brain mask (see :func:`bids_recon.rois.masks.load_mask_file` for the counts).

    Parameters
    ----------
    path : Path
        Label or mask volume (NIfTI or MGZ).
    brain_mask : nibabel image
        The target grid's brain mask.
    label : int or str, optional
        ``LABELS`` (see :mod:`bids_recon.rois.labels`): a number, numbers or colour-table names (``1,2``,
        ``early``), or ``>0``/``None`` for every positive label. NSD-style files use -1 outside cortex and 0 for "not
        in ROI", so the selection is ``== k`` or ``> 0``, never ``!= 0``.
    brain_source : Path, optional
        The file the brain mask's grid comes from (named when the ROI does not fit it).

    Raises
    ------
    BadDataError
        The ROI's grid differs from the target's and most of its voxels fall outside the brain mask (another space).
    """
    resampled, _ = load_mask_file(Path(path), brain_mask, label, brain_source)
    return resampled & (np.asarray(brain_mask.dataobj).reshape(brain_mask.shape[:3]) > 0)


def build_rois(
    brain_mask: nib.Nifti1Image,
    params: RoiParams | None = None,
    brain_source: Path | None = None,
    subject: str | None = None,
    space: str | None = None,
    log: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, RoiSource]]:
    """Every ROI in the BOLD grid: atlas ROIs by label names, replaced by user masks (one file or the union of
    several) where given; every voxel dropped counted and logged; sizes checked.

    Parameters
    ----------
    brain_mask : nibabel image
        The participant's brain mask (the BOLD grid).
    params : RoiParams, optional
        ``labels`` (ROI name -> atlas label names), ``user_masks`` (ROI name -> ``PATH[:LABELS]`` or a list of
        them, replacing the atlas ROI of that name), the atlas and ``min_voxels``; the defaults when omitted.
    brain_source : Path, optional
        The file the brain mask's grid comes from (named when an ROI does not fit it).
    subject : str, optional
        The participant: ``{subject}`` in a user mask's path is replaced by its label (NSD's ROIs are per
        participant: ``nsddata/ppdata/subj{subject}/func1pt8mm/roi/streams.nii.gz``).
    space : str, optional
        The data's space (``T1w``, ``func1pt8mm``...): the atlas is refused unless it is the atlas's template
        (:func:`bids_recon.rois.masks.check_atlas_space`); ``None``: not checked.
    log : bool
        Log each ROI's counts (file by file, the union, the voxels outside the brain mask).

    Returns
    -------
    masks : dict
        ROI name -> boolean array, shape (X, Y, Z).
    sources : dict
        ROI name -> :class:`~bids_recon.rois.masks.RoiSource` (files, labels, sha256, counts; or the atlas).

    Raises
    ------
    MissingInputError
        TemplateFlow files or a user mask missing (exit code 66).
    BadDataError
        The atlas on data of another space, a user ROI in another space, or an ROI with fewer than ``min_voxels``
        voxels after resampling and masking (exit code 65).
    """
    params = params or RoiParams()
    from_atlas = {name: list(params.labels[name]) for name in params.atlas_names}
    check_atlas_space(list(from_atlas), params.template, params.atlas, space, brain_source)
    brain = np.asarray(brain_mask.dataobj).reshape(brain_mask.shape[:3]) > 0
    masks: dict[str, np.ndarray] = {}
    sources: dict[str, RoiSource] = {}
    where: dict[str, Path] = {}
    if from_atlas:
        unmasked, files = _atlas_masks(brain_mask, from_atlas, params)
        atlas_img = nib.load(files["atlas"])
        on_grid = same_grid(atlas_img, brain_mask)
        native = {} if on_grid else masks_from_atlas(np.asarray(atlas_img.dataobj).astype(np.int64),
                                                     load_label_table(files["labels"]), from_atlas)
        for name, mask in unmasked.items():
            masks[name] = mask & brain
            lost = (0, 0) if on_grid else voxels_lost(native[name], atlas_img.affine, mask, brain_mask.affine)
            sources[name] = RoiSource(name, "atlas", voxels=int(masks[name].sum()),
                                      outside_brain=int((mask & ~brain).sum()), atlas={
                "AtlasVoxels": int(mask.sum()) if on_grid else int(native[name].sum()),
                "VoxelsOutsideFieldOfView": lost[0], "VoxelsNotSampled": lost[1],
                "Atlas": params.atlas, "AtlasDesc": params.atlas_desc, "Template": params.template,
                "TemplateResolution": params.resolution, "AtlasLabels": from_atlas[name],
                # the files read (the sink names them as BIDS URIs of the linked TemplateFlow folder)
                "Sources": [str(Path(files["atlas"]).absolute()), str(Path(files["labels"]).absolute())],
                "Resampling": "none: the atlas is on the BOLD grid" if same_grid(atlas_img, brain_mask) else
                f"nearest neighbour from the atlas grid {grid_text(atlas_img)} to the BOLD grid"})
            where[name] = Path(files["atlas"])
    for name, value in params.user_masks.items():
        parts, records = [], []
        for spec in mask_specs(value):
            path, labels = split_roi_spec(subject_path(spec, subject))
            try:
                resampled, record = load_mask_file(Path(path), brain_mask, labels or None, brain_source)
            except BidsReconError as exc:  # name the ROI the file was given for
                raise type(exc)(f"ROI '{name}': {exc}") from exc
            parts.append(resampled)
            records.append(record)
        union = union_of(parts)
        masks[name] = union & brain
        sources[name] = RoiSource(name, "user", voxels=int(masks[name].sum()),
                                  outside_brain=int((union & ~brain).sum()), files=records)
        where[name] = Path(records[0].path)
    if log:
        for source in sources.values():
            LOGGER.info("%s", source.describe())
    check_roi_sizes(masks, params.min_voxels, where, {name: source.describe() for name, source in sources.items()})
    return masks, sources


def subject_path(spec: str, subject: str | None) -> str:
    """A user mask's ``PATH[:LABELS]`` with ``{subject}`` replaced by the participant's label."""
    if subject is None or "{subject}" not in spec:
        return spec
    return spec.replace("{subject}", str(subject))


def roi_columns(brain_mask: nib.spatialimages.SpatialImage, roi_mask: nib.spatialimages.SpatialImage) -> np.ndarray:
    """Columns of the brain-mask beta matrix that lie in an ROI.

    Betas are stored as ``(n_trials, n_brain_voxels)`` with the brain mask's voxels in C order; this gives the
    indices of the ROI's voxels among them.

    Returns
    -------
    ndarray of int64, shape (n_roi_voxels,)

    Raises
    ------
    BadDataError
        The two masks are on different grids (exit code 65).
    """
    brain = np.asarray(brain_mask.dataobj) > 0
    roi = np.asarray(roi_mask.dataobj) > 0
    if brain.shape != roi.shape[: brain.ndim]:
        raise BadDataError(f"ROI grid {roi.shape} differs from the brain mask's {brain.shape}")
    return np.flatnonzero(roi.reshape(brain.shape)[brain]).astype(np.int64)


def roi_union(roi_masks: list[nib.spatialimages.SpatialImage]) -> nib.Nifti1Image:
    """The union of ROI masks of one grid (e.g. every visual ROI: all visual voxels), as a uint8 mask.

    Raises
    ------
    BadDataError
        No mask given, or masks on different grids (exit code 65).
    """
    if not roi_masks:
        raise BadDataError("the union of ROIs needs at least one ROI mask")
    first = roi_masks[0]
    union = np.zeros(first.shape[:3], dtype=bool)
    for img in roi_masks:
        if img.shape[:3] != first.shape[:3] or not np.allclose(img.affine, first.affine, atol=1e-4):
            raise BadDataError(f"ROI masks on different grids ({img.shape[:3]} vs {first.shape[:3]}) cannot be joined",
                               getattr(img, "get_filename", lambda: None)())
        union |= np.asarray(img.dataobj).reshape(union.shape) > 0
    return nib.Nifti1Image(union.astype(np.uint8), first.affine)


__all__ = ["MIN_ROI_INSIDE", "atlas_rois", "build_rois", "check_roi_fits", "check_roi_sizes", "grid_text",
           "load_label_table", "masks_from_atlas", "resample_mask", "roi_columns", "roi_union", "subject_path",
           "templateflow_file", "user_roi"]
