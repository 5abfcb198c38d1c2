"""The file-level steps of an import, one call each for the workflow's nodes (and a notebook): the mask the betas
are read in, one session's betas, the test split of every session."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_recon.errors import UsageError
from bids_recon.features.params import StimulusParams
from bids_recon.glm.importers import BetaImporter, ImportContext, ImportPlan, importer_for


def planned(betas: str, subject: str, sessions: list[str] | None, context: ImportContext
            ) -> tuple[BetaImporter, ImportPlan]:
    """The importer of ``betas`` and its plan for one participant (``sessions``: labels, all when ``None``)."""
    importer = importer_for(betas, context)
    return importer, importer.plan(subject, sessions)


#: ``(brain mask, file of its grid) -> {ROI name: boolean (X, Y, Z) array}``: the ROIs on the betas' grid.
RoiMasks = Callable[[nib.Nifti1Image, Path], Mapping[str, np.ndarray]]


def import_mask(betas: str, subject: str, sessions: list[str] | None, context: ImportContext,
                roi_masks: RoiMasks | None = None) -> tuple[nib.Nifti1Image, dict]:
    """The voxels an import reads, on the betas' grid, and its provenance.

    Parameters
    ----------
    roi_masks : callable, optional
        With ``voxels=rois`` in the spec, only the voxels of the ROIs (their union within the brain mask) are read,
        as Takagi & Nishimoto read NSD's: the caller gives them, as a function of the import's brain mask and of a
        file on its grid (e.g. ``lambda brain, source: bids_recon.rois.build_rois(brain, params,
        brain_source=source, subject=subject)[0]``); called only then.

    Returns
    -------
    mask : nibabel image
        uint8 mask on the betas' grid.
    provenance : dict
        :meth:`ImportPlan.provenance` plus ``Voxels`` (what was read) and ``VoxelCount``.

    Raises
    ------
    UsageError
        ``voxels=rois`` without ``roi_masks``.
    """
    importer, plan = planned(betas, subject, sessions, context)
    brain = importer.brain_mask(plan)
    data = np.asarray(brain.dataobj) > 0
    what = "every voxel of the brain mask"
    if importer.voxels == "rois":
        if roi_masks is None:
            raise UsageError(f"--betas {betas}: voxels=rois reads only the voxels of the ROIs, but no ROI masks were "
                             "given to the import")
        masks = roi_masks(brain, plan.sessions[0].files[0].path)
        union = np.zeros(data.shape, dtype=bool)
        for mask in masks.values():
            union |= mask
        data &= union
        what = f"the voxels of the ROIs {', '.join(masks)} (voxels=rois)"
    provenance = {**plan.provenance(), "Voxels": what, "VoxelCount": int(data.sum()),
                  "MaskFile": str(plan.mask_file) if plan.mask_file else
                  "voxels non-zero in some trial of the first session"}
    return nib.Nifti1Image(data.astype(np.uint8), plan.affine), provenance


def import_session(betas: str, subject: str, session: str, mask_img: nib.Nifti1Image, context: ImportContext,
                   out_file: Path) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """One session's betas inside ``mask_img`` (``(n_trials, n_voxels)`` float32 ``.npy`` memory map at
    ``out_file``), its trial table and its per-trial metadata."""
    importer, plan = planned(betas, subject, [session], context)
    found = plan.session(session)
    mask = np.asarray(mask_img.dataobj) > 0
    stacked = importer.read_session(plan, found, mask, Path(out_file))
    metadata = found.metadata.reset_index(drop=True)
    if metadata.shape[1] == 0:  # a table with no column cannot be written and read back
        metadata = pd.DataFrame({"trial": np.arange(len(found.trials))})
    return stacked, found.trials, metadata


def mark_splits(trials: list[pd.DataFrame], metadata: list[pd.DataFrame], stimuli: StimulusParams,
                bids_dir: Path | str, sources: list[Path] | None = None) -> list[pd.DataFrame]:
    """Every imported session's trial table with its ``split`` set by ``--test-split`` (see
    :func:`bids_recon.design.split.mark_imported_split`)."""
    from bids_recon.design.split import mark_imported_split, parse_test_split
    from bids_recon.features.resolvers import resolver_for

    if parse_test_split(stimuli.test_split) is None:
        return [t.copy() for t in trials]
    resolver = resolver_for(Path(bids_dir), stimuli)
    sources = sources or [None] * len(trials)
    return [mark_imported_split(t, m, stimuli, resolver, s) for t, m, s in zip(trials, metadata, sources, strict=True)]


__all__ = ["RoiMasks", "import_mask", "import_session", "mark_splits", "planned"]
