"""Visual ROIs in the BOLD grid: from a TemplateFlow atlas (by label names) or from user masks."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.io import read_tsv
from bids_recon.rois.labels import split_roi_spec
from bids_recon.rois.params import RoiParams

HOW_TO_PROVIDE_TEMPLATES = (
    "bids_recon never downloads at run time and never writes into TEMPLATEFLOW_HOME. On a machine with internet, "
    "run `bids_recon-fetch FOLDER --include templates` (it fetches the atlas, its label table and the brain mask) "
    "and point TEMPLATEFLOW_HOME at FOLDER/templateflow (`source FOLDER/bids_recon-env.sh`; containers ship one); "
    "or give your own masks with --roi-mask NAME=PATH."
)


def _query_text(query: dict[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in query.items())


def templateflow_file(template: str, **query: object) -> Path:
    """Return one TemplateFlow file already on disk, never downloading, never writing, without importing
    ``templateflow`` (its import populates an empty ``TEMPLATEFLOW_HOME``).

    Parameters
    ----------
    template : str
        Template identifier, e.g. ``MNI152NLin2009cAsym``.
    **query
        TemplateFlow entities (``resolution``, ``atlas``, ``desc``, ``suffix``, ``extension``), matched as
        ``templateflow.api.ls`` matches them (:func:`bids_recon.rois.templates.find_template_files`).

    Raises
    ------
    MissingInputError
        No such file in ``$TEMPLATEFLOW_HOME`` (default ``~/.cache/templateflow``), or only TemplateFlow's empty
        placeholder (or a DataLad link to a file not downloaded) is there (exit 66).
    BadDataError
        The query matches several files (exit 65).
    """
    from bids_recon.rois.templates import find_template_files, templateflow_home

    home = templateflow_home()
    found = find_template_files(template, dict(query), home)
    present = [p for p in found if p.is_file() and p.stat().st_size > 0]
    if len(present) == 1:
        return present[0]
    if len(present) > 1:
        raise BadDataError(f"TemplateFlow query tpl-{template} {_query_text(query)} matches {len(present)} files "
                           f"({', '.join(p.name for p in present[:3])}): be more specific", home)
    state = (f"only as an empty placeholder or a link to a file not downloaded ({found[0].name})" if found else
             "not on disk")
    raise MissingInputError(
        f"TemplateFlow file tpl-{template} {_query_text(query)} is {state} (TEMPLATEFLOW_HOME={home}). "
        + HOW_TO_PROVIDE_TEMPLATES,
    )


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


def resample_mask(mask_img: nib.spatialimages.SpatialImage, target: nib.spatialimages.SpatialImage) -> np.ndarray:
    """Resample a mask/label image to the grid of ``target`` (nearest neighbour); returns the data array."""
    from nilearn.image import resample_to_img

    if mask_img.shape[:3] == target.shape[:3] and np.allclose(mask_img.affine, target.affine, atol=1e-4):
        return np.asarray(mask_img.dataobj)
    resampled = resample_to_img(mask_img, target, interpolation="nearest", force_resample=True,
                                copy_header=True)
    return np.asarray(resampled.dataobj)


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
    p = params or RoiParams()
    atlas_path = templateflow_file(p.template, resolution=p.resolution, atlas=p.atlas, desc=p.atlas_desc,
                                   suffix="dseg", extension=".nii.gz")
    table_path = templateflow_file(p.label_table_template, atlas=p.atlas, suffix="dseg", extension=".tsv")
    atlas_data = resample_mask(nib.load(atlas_path), brain_mask).astype(np.int64)
    brain = np.asarray(brain_mask.dataobj) > 0
    masks = {name: m & brain for name, m in masks_from_atlas(atlas_data, load_label_table(table_path),
                                                            definitions).items()}
    return masks, {"atlas": atlas_path, "labels": table_path}


def user_roi(path: Path, brain_mask: nib.Nifti1Image, label: int | str | None = None,
             brain_source: Path | None = None) -> np.ndarray:
    """A user label volume resampled to the BOLD (or imported betas') grid: the voxels of the chosen labels, within
    the brain mask.

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
        The file the brain mask's grid comes from (imported betas): an ROI on another grid must then overlap the
        brain mask (:func:`check_roi_fits`).

    Raises
    ------
    BadDataError
        With ``brain_source``: the ROI's grid differs from the target's and most of its voxels fall outside the
        brain mask (another space).
    """
    from bids_recon.rois.labels import parse_labels

    path = Path(path)
    if not path.is_file():
        raise MissingInputError("ROI mask does not exist", path)
    try:
        img = nib.load(path)
        own = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises several types
        raise BadDataError(f"cannot read ROI mask ({exc})", path) from exc
    selection = parse_labels(label, path)
    selected_img = nib.Nifti1Image(selection.select(own).astype(np.uint8), img.affine)
    brain = np.asarray(brain_mask.dataobj) > 0
    data = resample_mask(selected_img, brain_mask) > 0
    if brain_source is not None:  # imported betas: an ROI of another space is refused naming both files
        check_roi_fits(selected_img, data, brain, path, brain_mask, brain_source)
    return data & brain


def grid_text(img: nib.spatialimages.SpatialImage) -> str:
    """``81x104x83 (1.8x1.8x1.8 mm)``: an image's grid, for messages."""
    zooms = "x".join(f"{z:.3g}" for z in img.header.get_zooms()[:3])
    return f"{'x'.join(map(str, img.shape[:3]))} ({zooms} mm)"


#: Fraction of an ROI's voxels (resampled to another grid) that must fall inside the brain mask.
MIN_ROI_INSIDE = 0.5


def check_roi_fits(roi_img: nib.spatialimages.SpatialImage, resampled: np.ndarray, brain: np.ndarray, roi_path: Path,
                   brain_mask: nib.spatialimages.SpatialImage, brain_source: Path | None = None) -> None:
    """Refuse an ROI on another grid than the betas' that does not overlap their brain mask (another space).

    An ROI on the same grid is taken as it is; on another grid (another resolution of the same space, e.g.
    NSD's func1mm ROIs for func1pt8mm betas) it is resampled, and at least :data:`MIN_ROI_INSIDE` of its voxels
    must then lie inside the brain mask.

    Raises
    ------
    BadDataError
        Naming both files, their grids and the fraction inside (exit 65).
    """
    if roi_img.shape[:3] == brain_mask.shape[:3] and np.allclose(roi_img.affine, brain_mask.affine, atol=1e-3):
        return
    n_selected = int(resampled.sum())
    inside = float((resampled & brain).sum()) / n_selected if n_selected else 0.0
    if inside >= MIN_ROI_INSIDE:
        return
    raise BadDataError(
        f"ROI grid {grid_text(roi_img)} differs from the betas' grid {grid_text(brain_mask)} of "
        f"{Path(brain_source).name if brain_source else 'the brain mask'}, and only {100 * inside:.0f}% of the "
        f"ROI's voxels fall inside its brain mask after resampling: the ROI is in another space (give the ROI "
        "volume of the betas' space, e.g. NSD's func1pt8mm/roi/)", roi_path)


def check_roi_sizes(masks: dict[str, np.ndarray], min_voxels: int, sources: dict[str, Path] | None = None) -> None:
    """Refuse ROIs with fewer than ``min_voxels`` voxels in the BOLD grid (exit code 65)."""
    for name, mask in masks.items():
        count = int(mask.sum())
        if count < min_voxels:
            raise BadDataError(
                f"ROI '{name}' has {count} voxels in the BOLD grid after resampling and masking "
                f"(minimum {min_voxels}); check that the mask and the BOLD data share a space",
                (sources or {}).get(name),
            )


def build_rois(
    brain_mask: nib.Nifti1Image,
    params: RoiParams | None = None,
    brain_source: Path | None = None,
    subject: str | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Every ROI in the BOLD grid: atlas ROIs by label names, replaced by user masks where given; sizes checked.

    Parameters
    ----------
    brain_mask : nibabel image
        The participant's brain mask (the BOLD grid).
    params : RoiParams, optional
        ``labels`` (ROI name -> atlas label names), ``user_masks`` (ROI name -> ``PATH[:LABELS]``, replacing the
        atlas ROI of that name), the atlas and ``min_voxels``; the defaults when omitted.
    brain_source : Path, optional
        The file the brain mask's grid comes from (named when a user ROI does not fit it).
    subject : str, optional
        The participant: ``{subject}`` in a user mask's path is replaced by its label (NSD's ROIs are per
        participant: ``nsddata/ppdata/subj{subject}/func1pt8mm/roi/streams.nii.gz``).

    Returns
    -------
    masks : dict
        ROI name -> boolean array, shape (X, Y, Z).
    sources : dict
        ROI name -> the files it came from.

    Raises
    ------
    MissingInputError
        TemplateFlow files or a user mask missing (exit code 66).
    BadDataError
        An ROI with fewer than ``min_voxels`` voxels after resampling and masking (exit code 65).
    """
    params = params or RoiParams()
    user = dict(params.user_masks)
    from_atlas = {name: names for name, names in params.labels.items() if name not in user}
    masks: dict[str, np.ndarray] = {}
    sources: dict[str, list[str]] = {}
    if from_atlas:
        atlas_masks, files = atlas_rois(brain_mask, from_atlas, params)
        masks.update(atlas_masks)
        sources.update({name: [str(files["atlas"]), str(files["labels"])] for name in atlas_masks})
    for name, spec in user.items():
        path, labels = split_roi_spec(subject_path(spec, subject))
        masks[name] = user_roi(Path(path), brain_mask, labels or None, brain_source)
        sources[name] = [path]
    check_roi_sizes(masks, params.min_voxels, {name: Path(files[0]) for name, files in sources.items()})
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
