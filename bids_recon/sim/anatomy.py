"""The simulated template space: MNI-like grid, brain mask, Harvard-Oxford-style atlas, T1w image."""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd
from scipy import ndimage

from bids_recon.rois.params import DEFAULT_ROI_LABELS

MNI_CENTRE = (0.0, -18.0, 18.0)
"""MNI coordinate (mm) of the grid centre."""

EARLY_VISUAL = tuple(DEFAULT_ROI_LABELS["earlyvisual"])
"""Harvard-Oxford label names of the early-visual ROI (the pipeline's default, from bids_recon.rois.params)."""

HIGHER_VISUAL = tuple(DEFAULT_ROI_LABELS["highervisual"])
"""Harvard-Oxford label names of the higher-visual ROI."""

# Remaining Harvard-Oxford labels roughly from anterior to posterior (placed as coarse parcels).
_OTHER_ORDER = (
    1, 33, 25, 27, 3, 4, 5, 6, 29, 28, 41, 8, 2, 44, 26, 7, 9, 11, 14, 34, 37, 42, 17, 30, 45, 43, 10, 12,
    15, 38, 19, 46, 18, 20, 31, 13, 21,
)  # fmt: skip


def label_table() -> pd.DataFrame:
    """The Harvard-Oxford cortical label table shipped in ``bids_recon.data`` (columns index, name)."""
    return pd.read_csv(io.StringIO(label_table_text()), sep="\t")


def label_table_text() -> str:
    """The label table file's exact text."""
    return resources.files("bids_recon.data").joinpath("tpl-MNI152NLin6Asym_atlas-HOCPA_dseg.tsv").read_text()


def make_affine(shape: tuple[int, int, int], voxel_size: float) -> np.ndarray:
    """RAS affine of the grid, with its centre at :data:`MNI_CENTRE`.

    Parameters
    ----------
    shape : tuple of int
        Grid shape ``(nx, ny, nz)``.
    voxel_size : float
        Isotropic voxel size in mm.

    Returns
    -------
    ndarray, shape (4, 4)
    """
    aff = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    centre_idx = (np.asarray(shape, dtype=float) - 1) / 2
    aff[:3, 3] = np.asarray(MNI_CENTRE) - voxel_size * centre_idx
    # round the origin to the voxel grid so that it is MNI-like (integer mm)
    aff[:3, 3] = np.round(aff[:3, 3])
    return aff


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian random field with unit sd, shape ``shape``."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


@dataclass
class Anatomy:
    """Template-space anatomy shared by all subjects.

    Attributes
    ----------
    affine : ndarray, shape (4, 4)
        Voxel-to-MNI affine.
    mask : ndarray, shape (nx, ny, nz), bool
        Template brain mask.
    atlas : ndarray, shape (nx, ny, nz), int16
        Harvard-Oxford label index per voxel (0 = unlabelled: outside the brain or "white matter").
    coords : ndarray, shape (nx, ny, nz, 3), float64
        Normalised ellipsoid coordinates (u: left-right, v: posterior-anterior, w: inferior-superior),
        about -1..1 inside the brain.
    t1w : ndarray, shape (nx, ny, nz), float32
        Synthetic T1w-like image.
    wm : ndarray, shape (nx, ny, nz), bool
        Deep "white matter" core (unlabelled brain voxels).
    early_labels, higher_labels : tuple of int
        Label indices of the early- and higher-visual ROIs.
    """

    affine: np.ndarray
    mask: np.ndarray
    atlas: np.ndarray
    coords: np.ndarray
    t1w: np.ndarray
    wm: np.ndarray
    early_labels: tuple[int, ...]
    higher_labels: tuple[int, ...]


def _split_by(values: np.ndarray, fractions: list[float]) -> np.ndarray:
    """Assign each value a group 0..len(fractions)-1 by rank, with the given cumulative fractions."""
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable") / max(len(values), 1)
    return np.searchsorted(np.cumsum(fractions)[:-1], ranks, side="right")


def make_anatomy(
    shape: tuple[int, int, int], voxel_size: float, early_fraction: float, higher_fraction: float
) -> Anatomy:
    """Build the template: brain mask, atlas and T1w image.

    The template does not depend on the simulation seed (like a real template space).

    Parameters
    ----------
    shape : tuple of int
        Grid shape.
    voxel_size : float
        Voxel size in mm.
    early_fraction, higher_fraction : float
        Fractions of brain voxels labelled early visual and higher visual.

    Returns
    -------
    Anatomy
    """
    rng = np.random.default_rng([20240601, *shape])
    table = label_table()
    by_name = dict(zip(table["name"], table["index"].astype(int), strict=True))
    early_labels = tuple(by_name[n] for n in EARLY_VISUAL)
    higher_labels = tuple(by_name[n] for n in HIGHER_VISUAL)

    idx = np.indices(shape, dtype=float)
    centre = (np.asarray(shape, dtype=float) - 1) / 2
    semi = centre - 0.6
    coords = np.moveaxis((idx - centre[:, None, None, None]) / semi[:, None, None, None], 0, -1)
    radius = np.sqrt((coords**2).sum(-1))
    bumpy = radius * (1 + 0.05 * _smooth_field(rng, shape, 2.5))
    # flatten the inferior surface a little (brains are not eggs)
    bumpy = bumpy + 0.12 * np.clip(-coords[..., 2] - 0.6, 0, None)
    mask = bumpy < 1.0
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(mask))
    wm = mask & (bumpy < 0.42)
    cortex = mask & ~wm
    n_brain = int(mask.sum())

    u, v, w = coords[..., 0], coords[..., 1], coords[..., 2]
    atlas = np.zeros(shape, dtype=np.int16)
    cx = np.flatnonzero(cortex)
    uu, vv, ww = u.ravel()[cx], v.ravel()[cx], w.ravel()[cx]

    # early visual: posterior and medial
    score_e = -vv - 1.3 * np.abs(uu) - 0.3 * np.abs(ww)
    n_e = int(round(early_fraction * n_brain))
    ev = np.argsort(-score_e, kind="stable")[:n_e]
    ev_lab = np.empty(n_e, dtype=np.int16)
    pole = _split_by(vv[ev], [0.25, 0.75]) == 0
    rest = ~pole
    grp = _split_by(ww[ev][rest], [0.3, 0.25, 0.2, 0.25])  # lingual, intracalc, supracalc, cuneal
    names = [by_name["Lingual Gyrus"], by_name["Intracalcarine Cortex"], by_name["Supracalcarine Cortex"]]
    ev_lab[pole] = by_name["Occipital Pole"]
    ev_lab[rest] = np.asarray([*names, by_name["Cuneal Cortex"]], dtype=np.int16)[grp]
    atlas.ravel()[cx[ev]] = ev_lab

    # higher visual: posterior-lateral and ventral-posterior, outside early visual
    free = np.ones(len(cx), dtype=bool)
    free[ev] = False
    score_h = -vv + 0.7 * np.abs(uu) - 0.5 * ww
    score_h[~free] = -np.inf
    n_h = int(round(higher_fraction * n_brain))
    hv = np.argsort(-score_h, kind="stable")[:n_h]
    h_lab = np.empty(n_h, dtype=np.int16)
    lateral = _split_by(np.abs(uu[hv]), [0.5, 0.5]) == 1
    upper = _split_by(ww[hv], [0.5, 0.5]) == 1
    h_lab[lateral & upper] = by_name["Lateral Occipital Cortex, superior division"]
    h_lab[lateral & ~upper] = by_name["Lateral Occipital Cortex, inferior division"]
    ventral = ~lateral
    post = _split_by(vv[hv][ventral], [0.35, 0.65]) == 0
    ven_lab = np.empty(int(ventral.sum()), dtype=np.int16)
    ven_lab[post] = by_name["Occipital Fusiform Gyrus"]
    ant = ~post
    sub = _split_by(np.abs(uu[hv][ventral][ant]), [0.35, 0.3, 0.35])  # medial .. lateral
    ven_lab[ant] = np.asarray(
        [
            by_name["Parahippocampal Gyrus, posterior division"],
            by_name["Temporal Occipital Fusiform Cortex"],
            by_name["Inferior Temporal Gyrus, temporooccipital part"],
        ],
        dtype=np.int16,
    )[sub]
    h_lab[ventral] = ven_lab
    atlas.ravel()[cx[hv]] = h_lab
    free[hv] = False

    # everything else: coarse parcels ordered from anterior to posterior
    others = np.flatnonzero(free)
    n_other = len(_OTHER_ORDER)
    seeds = others[rng.choice(len(others), n_other, replace=False)]
    seed_xyz = np.stack([uu[seeds], vv[seeds], ww[seeds]], 1)
    seeds_sorted = seed_xyz[np.argsort(-seed_xyz[:, 1], kind="stable")]
    pts = np.stack([uu[others], vv[others], ww[others]], 1)
    d2 = ((pts[:, None, :] - seeds_sorted[None, :, :]) ** 2).sum(-1)
    atlas.ravel()[cx[others]] = np.asarray(_OTHER_ORDER, dtype=np.int16)[np.argmin(d2, axis=1)]

    # synthetic T1w: bright white matter, grey cortex, dark CSF rim, smooth bias field
    csf = mask & ~ndimage.binary_erosion(mask)
    t1 = np.where(wm, 110.0, np.where(mask, 75.0, 0.0))
    t1[csf] = 35.0
    t1 = ndimage.gaussian_filter(t1, 0.7) * (1 + 0.05 * _smooth_field(rng, shape, 4.0))
    t1 = t1 + np.where(mask, 2.0 * rng.standard_normal(shape), 0.0)
    t1w = np.clip(t1, 0, None).astype(np.float32)

    return Anatomy(
        affine=make_affine(shape, voxel_size),
        mask=mask,
        atlas=atlas,
        coords=coords,
        t1w=t1w,
        wm=wm,
        early_labels=early_labels,
        higher_labels=higher_labels,
    )


def subject_mask(anat: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """A subject's brain mask in template space: the template mask with an irregular border.

    Some border voxels of the template mask are dropped and a few outside voxels added, so that
    subject masks differ slightly from each other and from the template.

    Parameters
    ----------
    anat : Anatomy
        The template.
    rng : numpy.random.Generator
        Subject's randomness.

    Returns
    -------
    ndarray, shape (nx, ny, nz), bool
    """
    field = _smooth_field(rng, anat.mask.shape, 1.5)
    inner_border = anat.mask & ~ndimage.binary_erosion(anat.mask)
    outer_border = ndimage.binary_dilation(anat.mask) & ~anat.mask
    mask = anat.mask & ~(inner_border & (field < -0.8))
    mask |= outer_border & (field > 1.3)
    return ndimage.binary_fill_holes(mask)
