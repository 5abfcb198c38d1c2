"""Settings of the ROI stage (``[workflow.rois]``): the one place their defaults live, and the parser of the
voxel-selection text they hold (``ncsnr>T``, ``top:K``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bids_recon.errors import UsageError
from bids_recon.params import problem_of, setting

#: Harvard-Oxford cortical labels (names in the atlas's own label table) that make each default ROI.
DEFAULT_ROI_LABELS: dict[str, tuple[str, ...]] = {
    "earlyvisual": (
        "Intracalcarine Cortex",
        "Supracalcarine Cortex",
        "Cuneal Cortex",
        "Lingual Gyrus",
        "Occipital Pole",
    ),
    "highervisual": (
        "Lateral Occipital Cortex, superior division",
        "Lateral Occipital Cortex, inferior division",
        "Occipital Fusiform Gyrus",
        "Temporal Occipital Fusiform Cortex",
        "Inferior Temporal Gyrus, temporooccipital part",
        "Parahippocampal Gyrus, posterior division",
    ),
}


def mask_specs(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """The ``PATH[:LABELS]`` files of one user ROI: a single text, or a list of them whose union is the ROI."""
    return [value] if isinstance(value, str) else list(value)


def _check_user_masks(masks: dict[str, str | list[str]]) -> str | None:
    from bids_recon.rois.labels import label_problem, split_roi_spec

    for name, value in masks.items():
        specs = mask_specs(value)
        if not specs:
            return f"ROI '{name}' lists no file (give PATH[:LABELS] or a list of them)"
        for spec in specs:
            path, labels = split_roi_spec(spec)
            if not name or not path:
                return f"'{name}={spec}' must be NAME=PATH[:LABELS]"
            problem = label_problem(labels)
            if problem:
                return f"ROI '{name}': {problem}"
    return None


_THRESHOLD = re.compile(r"^ncsnr\s*>\s*(-?\d+(?:\.\d*)?|\.\d+)$")
_TOP = re.compile(r"^top\s*[:=]?\s*(\d+)$")


@dataclass(frozen=True)
class VoxelSelection:
    """A parsed ``--voxel-selection``: ``kind`` ``ncsnr`` (keep NCSNR > ``value``) or ``top`` (keep ``value``
    voxels)."""

    kind: str
    value: float

    def describe(self) -> str:
        """One phrase for the methods text and the ROI sidecars."""
        if self.kind == "ncsnr":
            return (f"voxels whose noise-ceiling SNR (NCSNR, from the repeated training stimuli) exceeded "
                    f"{self.value:g}")
        return f"the {int(self.value)} voxels of highest noise-ceiling SNR (NCSNR, from the repeated training stimuli)"


def parse_voxel_selection(spec: str | None) -> VoxelSelection | None:
    """``ncsnr>T`` or ``top:K`` (``None`` for empty / ``none``).

    Raises
    ------
    UsageError
        Any other text (exit 64).
    """
    text = str(spec or "").strip().lower()
    if text in ("", "none", "all"):
        return None
    found = _THRESHOLD.match(text)
    if found:
        return VoxelSelection("ncsnr", float(found.group(1)))
    found = _TOP.match(text)
    if found and int(found.group(1)) > 0:
        return VoxelSelection("top", float(found.group(1)))
    raise UsageError(f"--voxel-selection '{spec}' must be ncsnr>T (e.g. ncsnr>0.2) or top:K (e.g. top:5000)")


def _check_voxel_selection(spec: str) -> str | None:
    return problem_of(parse_voxel_selection, spec)


@dataclass
class RoiParams:
    """Where the visual ROIs come from (see :func:`bids_recon.rois.build_rois`)."""

    template: str = setting("MNI152NLin2009cAsym", doc="TemplateFlow template of the atlas")
    resolution: int = setting(2, ge=1, doc="TemplateFlow resolution index of the atlas (res-02)")
    atlas: str = setting("HOCPA", doc="TemplateFlow atlas (Harvard-Oxford cortical)")
    atlas_desc: str = setting("th25", doc="desc- of the atlas's thresholded dseg")
    label_table_template: str = setting("MNI152NLin6Asym", doc="template whose folder holds the atlas's label table")
    labels: dict[str, list[str]] = setting(
        factory=lambda: {k: list(v) for k, v in DEFAULT_ROI_LABELS.items()}, min_items=1,
        doc="ROI name -> atlas label names")
    user_masks: dict[str, str | list[str]] = setting(factory=dict, check=_check_user_masks, doc=(
        "ROI name -> PATH[:LABELS] of a label volume replacing the atlas ROI, or a list of them whose union is the "
        "ROI (left and right hemisphere masks: earlyvisual = [\"lh.nii.gz\", \"rh.nii.gz\"]): LABELS = numbers or "
        "names from its colour table (1,2 or early,ventral; STEM.mgz.ctab found beside it or in NSD's freesurfer/ "
        "folder), or >0 (the default); voxels == k or > 0 are taken, never != 0 (NSD codes -1 outside cortex); "
        "{subject} in PATH is the participant; resampled (nearest) to the betas' grid"))
    voxel_selection: str = setting("", check=_check_voxel_selection, doc=(
        "keep only reliable voxels of each ROI: ncsnr>T (noise-ceiling SNR above T) or top:K (the K voxels of "
        "highest NCSNR), NCSNR computed from the repeated training stimuli only (never from the test set); empty: "
        "every voxel"))
    min_voxels: int = setting(20, ge=1, doc="smallest ROI (voxels in the BOLD grid) accepted")

    @property
    def names(self) -> list[str]:
        """Every ROI: the atlas ones, then user masks that add a new name."""
        return list(self.labels) + [k for k in self.user_masks if k not in self.labels]

    def atlas_of(self, name: str) -> str | None:
        """The atlas an ROI comes from, ``None`` for a user mask."""
        return None if name in self.user_masks else self.atlas

    @property
    def atlas_names(self) -> list[str]:
        """The ROIs taken from the template atlas (no user mask replaces them)."""
        return [name for name in self.labels if name not in self.user_masks]
