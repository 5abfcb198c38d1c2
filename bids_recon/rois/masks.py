"""ROIs with their provenance: each user mask file (or the union of several) resampled to the BOLD grid with every
voxel counted, the atlas used only in its own space, and what each ROI's sidecar says about where it came from.

A user ROI is one label volume or the union of several (``--roi-mask earlyvisual=lh.nii.gz --roi-mask
earlyvisual=rh.nii.gz``: GOD and Deeprecon ship one mask per hemisphere). For every file the voxels are counted at
each step, so that none is dropped silently:

- ``selected``: voxels of the chosen labels on the file's own grid;
- ``outside_fov``: of them, those whose centre falls outside the BOLD grid's field of view;
- ``not_sampled``: those inside it whose BOLD voxel the nearest-neighbour resampling did not take (a finer grid
  than the BOLD's: several of its voxels share one BOLD voxel, sampled at its centre);
- ``resampled``: BOLD-grid voxels of the file after resampling; ``in_brain``: of them, inside the brain mask (the
  others are dropped: the betas have no column there).

The template atlas (``workflow.rois.template``) is used only where the data are in its space
(:func:`check_atlas_space`): resampled to a participant's T1w or NSD's func1pt8mm grid, its labels would fall on
other voxels.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_recon.errors import BadDataError, MissingInputError
from bids_recon.io import sha256_file

LOGGER = logging.getLogger("bids_recon.rois")


@dataclass
class MaskFile:
    """One user mask file as used for an ROI: which voxels it gave at each step (see the module docstring)."""

    path: str
    labels: str
    sha256: str
    grid: str
    same_grid: bool
    selected: int
    outside_fov: int
    not_sampled: int
    resampled: int
    in_brain: int

    @property
    def outside_brain(self) -> int:
        return self.resampled - self.in_brain

    def resampling(self) -> str:
        """How the file came to the BOLD grid, in words."""
        if self.same_grid:
            return "none: the file is on the BOLD grid"
        return f"nearest neighbour from the file's grid {self.grid} to the BOLD grid"

    def describe(self) -> str:
        """One log phrase: every count from the file to the brain mask."""
        lost = []
        if self.outside_fov:
            lost.append(f"{self.outside_fov} outside the BOLD grid's field of view")
        if self.not_sampled:
            lost.append(f"{self.not_sampled} in BOLD voxels the nearest-neighbour resampling did not take")
        moved = "on the BOLD grid" if self.same_grid else (
            f"on its grid {self.grid} -> {self.resampled} BOLD-grid voxels"
            + (f" ({', '.join(lost)})" if lost else ""))
        return (f"{Path(self.path).name} ({self.labels}): {self.selected} voxels {moved}; {self.in_brain} inside the "
                f"brain mask" + (f", {self.outside_brain} outside it dropped" if self.outside_brain else ""))


@dataclass
class RoiSource:
    """Where one ROI came from and how many voxels each step kept (the ROI sidecar and the log line)."""

    name: str
    kind: str  # "user" or "atlas"
    voxels: int = 0
    outside_brain: int = 0
    files: list[MaskFile] = field(default_factory=list)
    atlas: dict[str, object] = field(default_factory=dict)

    def sidecar(self, datasets: dict[str, Path] | None = None) -> dict[str, object]:
        """The ROI mask's JSON: the real source (files with their sha256 and labels, or the atlas), the
        resampling, the voxel counts. No atlas or template is named for a user mask."""
        out: dict[str, object] = {"Voxels": self.voxels, "VoxelsOutsideBrainMask": self.outside_brain}
        if self.kind == "atlas":
            out.update(self.atlas)
            return out
        out["Sources"] = [source_uri(f.path, datasets) for f in self.files]
        out["Union"] = len(self.files) > 1
        out["Files"] = [{"Source": source_uri(f.path, datasets), "Labels": f.labels, "Sha256": f.sha256,
                         "Grid": f.grid, "Resampling": f.resampling(), "VoxelsSelected": f.selected,
                         "VoxelsOutsideFieldOfView": f.outside_fov, "VoxelsNotSampled": f.not_sampled,
                         "VoxelsResampled": f.resampled, "VoxelsInBrainMask": f.in_brain} for f in self.files]
        resampled = {f.resampling() for f in self.files}
        out["Resampling"] = resampled.pop() if len(resampled) == 1 else "; ".join(
            f"{Path(f.path).name}: {f.resampling()}" for f in self.files)
        return out

    def describe(self) -> str:
        """The log line of the ROI."""
        if self.kind == "atlas":
            lost = [f"{self.atlas[key]} {what}" for key, what in (
                ("VoxelsOutsideFieldOfView", "outside the BOLD grid's field of view"),
                ("VoxelsNotSampled", "in BOLD voxels the nearest-neighbour resampling did not take"))
                if self.atlas.get(key)]
            return (f"ROI {self.name}: {self.atlas.get('Atlas')} atlas ({self.atlas.get('Template')}), "
                    f"{self.atlas.get('AtlasVoxels')} voxels on its grid -> {self.voxels + self.outside_brain} of "
                    f"the BOLD grid" + (f" ({', '.join(lost)})" if lost else "") + f", {self.voxels} inside the "
                    "brain mask" + (f" ({self.outside_brain} outside it dropped)" if self.outside_brain else ""))
        parts = "; ".join(f.describe() for f in self.files)
        if len(self.files) == 1:
            return f"ROI {self.name}: {parts}"
        total = sum(f.in_brain for f in self.files)
        return (f"ROI {self.name}: union of {len(self.files)} files: {parts}; union {self.voxels} voxels"
                + (f" ({total - self.voxels} in more than one file)" if total != self.voxels else ""))

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def source_uri(path: str | Path, datasets: dict[str, Path] | None = None) -> str:
    """A file as a BIDS URI (``bids:raw:sourcedata/...``) when it lies in one of ``datasets`` (name -> root), else
    an absolute ``file://`` URI."""
    path = Path(path).absolute()
    for name, root in (datasets or {}).items():
        try:
            relative = path.resolve().relative_to(Path(root).absolute().resolve())
        except ValueError:
            continue
        return f"bids:{name}:{relative.as_posix()}"
    return path.as_uri()


sha256_of = sha256_file  # the one implementation, bids_recon.io.sha256_file


def grid_text(img: nib.spatialimages.SpatialImage) -> str:
    """``81x104x83 (1.8x1.8x1.8 mm)``: an image's grid, for messages."""
    zooms = "x".join(f"{z:.3g}" for z in img.header.get_zooms()[:3])
    return f"{'x'.join(map(str, img.shape[:3]))} ({zooms} mm)"


def same_grid(a: nib.spatialimages.SpatialImage, b: nib.spatialimages.SpatialImage, atol: float = 1e-3) -> bool:
    """Whether two images share shape (3D) and affine."""
    return a.shape[:3] == b.shape[:3] and bool(np.allclose(a.affine, b.affine, atol=atol))


def resample_mask(mask_img: nib.spatialimages.SpatialImage, target: nib.spatialimages.SpatialImage) -> np.ndarray:
    """Resample a mask/label image to the grid of ``target`` (nearest neighbour); returns the data array."""
    from nilearn.image import resample_to_img

    if same_grid(mask_img, target, atol=1e-4):
        return np.asarray(mask_img.dataobj)
    resampled = resample_to_img(mask_img, target, interpolation="nearest", force_resample=True,
                                copy_header=True)
    return np.asarray(resampled.dataobj)


def voxels_lost(selected: np.ndarray, affine: np.ndarray, resampled: np.ndarray, target_affine: np.ndarray
                ) -> tuple[int, int]:
    """Of a mask's selected voxels (its own grid), how many fall outside the target grid and how many land in
    target voxels that the resampled mask does not contain.

    Parameters
    ----------
    selected : ndarray of bool, shape (X, Y, Z)
        The mask on its own grid (``affine``).
    resampled : ndarray of bool, shape (X', Y', Z')
        The same mask resampled (nearest) to the target grid (``target_affine``).

    Returns
    -------
    outside_fov, not_sampled : int
    """
    ijk = np.argwhere(selected)
    if not len(ijk):
        return 0, 0
    to_target = np.linalg.inv(target_affine) @ affine
    index = np.rint(ijk @ to_target[:3, :3].T + to_target[:3, 3]).astype(np.int64)
    shape = np.asarray(resampled.shape[:3])
    inside = np.all((index >= 0) & (index < shape), axis=1)
    hit = resampled[tuple(index[inside].T)]
    return int((~inside).sum()), int((~hit).sum())


#: Fraction of a user ROI's voxels (resampled to another grid) that must fall inside the brain mask.
MIN_ROI_INSIDE = 0.5


def load_mask_file(path: Path, brain_mask: nib.spatialimages.SpatialImage, labels: int | str | None = None,
                   brain_source: Path | None = None) -> tuple[np.ndarray, MaskFile]:
    """One label volume as an ROI on the brain mask's grid, with its counts.

    Parameters
    ----------
    path : Path
        Label or mask volume (NIfTI or MGZ).
    brain_mask : nibabel image
        The target grid's brain mask (BOLD, or imported betas).
    labels : int or str, optional
        ``LABELS`` (see :mod:`bids_recon.rois.labels`); every positive label when omitted.
    brain_source : Path, optional
        The file the brain mask's grid comes from (named when the ROI does not fit it).

    Returns
    -------
    mask : ndarray of bool, shape of the brain mask
        The selected voxels on the brain mask's grid, before the brain mask (``record.in_brain`` of them inside).
    record : MaskFile

    Raises
    ------
    MissingInputError
        The file does not exist (66).
    BadDataError
        Unreadable; or on another grid with less than :data:`MIN_ROI_INSIDE` of its voxels inside the brain mask
        after resampling (another space; 65).
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
    if own.ndim > 3:
        own = own.reshape(own.shape[:3]) if int(np.prod(own.shape[3:])) == 1 else own
        if own.ndim > 3:
            raise BadDataError(f"an ROI mask is a 3D volume; this one has shape {own.shape}", path)
    selection = parse_labels(labels, path)
    chosen = selection.select(own)
    selected_img = nib.Nifti1Image(chosen.astype(np.uint8), img.affine)
    brain = np.asarray(brain_mask.dataobj).reshape(brain_mask.shape[:3]) > 0
    grid_same = same_grid(selected_img, brain_mask)
    data = resample_mask(selected_img, brain_mask) > 0
    outside_fov, not_sampled = (0, 0) if grid_same else voxels_lost(chosen, img.affine, data, brain_mask.affine)
    check_roi_fits(selected_img, data, brain, path, brain_mask, brain_source)
    inside = data & brain
    record = MaskFile(path=str(path.absolute()), labels=selection.describe(), sha256=sha256_of(path),
                      grid=grid_text(img), same_grid=grid_same, selected=int(chosen.sum()), outside_fov=outside_fov,
                      not_sampled=not_sampled, resampled=int(data.sum()), in_brain=int(inside.sum()))
    return data, record


def check_roi_fits(roi_img: nib.spatialimages.SpatialImage, resampled: np.ndarray, brain: np.ndarray, roi_path: Path,
                   brain_mask: nib.spatialimages.SpatialImage, brain_source: Path | None = None) -> None:
    """Refuse an ROI on another grid than the data's that does not overlap their brain mask (another space).

    An ROI on the same grid is taken as it is; on another grid (another resolution of the same space, e.g.
    NSD's func1mm ROIs for func1pt8mm betas, GOD's masks for fMRIPrep's T1w BOLD) it is resampled, and at least
    :data:`MIN_ROI_INSIDE` of its voxels must then lie inside the brain mask.

    Raises
    ------
    BadDataError
        Naming both files, their grids and the fraction inside (exit 65).
    """
    if same_grid(roi_img, brain_mask):
        return
    n_selected = int(resampled.sum())
    inside = float((resampled & brain).sum()) / n_selected if n_selected else 0.0
    if inside >= MIN_ROI_INSIDE:
        return
    where = Path(brain_source).name if brain_source else "the brain mask"
    raise BadDataError(
        f"ROI grid {grid_text(roi_img)} differs from the betas' grid {grid_text(brain_mask)} of {where}, and only "
        f"{100 * inside:.0f}% of the ROI's voxels fall inside its brain mask after resampling: the ROI is in another "
        "space (give the ROI volume of the data's space, e.g. NSD's func1pt8mm/roi/ for its betas)", roi_path)


def check_atlas_space(atlas_rois: list[str], template: str, atlas: str, space: str | None,
                      where: Path | None = None) -> None:
    """Refuse the template atlas on data in another space (exit 65), naming the space and the ROIs to give.

    Parameters
    ----------
    atlas_rois : list of str
        The ROIs that would come from the atlas (no ``--roi-mask`` replaces them).
    template, atlas : str
        The atlas's template space and name (``workflow.rois.template``, ``workflow.rois.atlas``).
    space : str or None
        The space of the BOLD or imported betas (``T1w``, ``func1pt8mm``, ``MNI152NLin2009cAsym``); ``None``: not
        known here (nothing is checked).
    where : Path, optional
        A file of the data, named in the message.

    Raises
    ------
    BadDataError
        ``space`` is not ``template`` and some ROI would come from the atlas.
    """
    if not atlas_rois or space is None or str(space) == str(template):
        return
    flags = " ".join(f"--roi-mask {name}=PATH" for name in atlas_rois)
    raise BadDataError(
        f"the data are in space {space}, but ROI(s) {', '.join(atlas_rois)} would come from the {atlas} atlas, "
        f"which is in {template}: an atlas is used only in its own space (resampled to {space} data its labels "
        f"fall on other voxels). Give a mask in {space} for each: {flags} (several --roi-mask of one NAME are "
        f"combined, e.g. left and right hemisphere), or use data in {template} (--space {template})", where)


def check_roi_sizes(masks: dict[str, np.ndarray], min_voxels: int, sources: dict[str, Path] | None = None,
                    details: dict[str, str] | None = None) -> None:
    """Refuse ROIs with fewer than ``min_voxels`` voxels in the BOLD grid (exit code 65); ``details`` (ROI name ->
    how its voxels were counted) go into the message."""
    for name, mask in masks.items():
        count = int(mask.sum())
        if count < min_voxels:
            said = (details or {}).get(name)
            raise BadDataError(
                f"ROI '{name}' has {count} voxels in the BOLD grid after resampling and masking "
                f"(minimum {min_voxels}); check that the mask and the BOLD data share a space"
                + (f" ({said})" if said else ""), (sources or {}).get(name))


def union_of(masks: list[np.ndarray]) -> np.ndarray:
    """The voxels in any of the masks (boolean, one grid)."""
    out = np.zeros(masks[0].shape, dtype=bool)
    for mask in masks:
        out |= mask
    return out


__all__ = ["MIN_ROI_INSIDE", "MaskFile", "RoiSource", "check_atlas_space", "check_roi_fits", "check_roi_sizes",
           "grid_text", "load_mask_file", "resample_mask", "same_grid", "sha256_of", "source_uri", "union_of",
           "voxels_lost"]
