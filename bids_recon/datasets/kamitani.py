"""What GOD and Deeprecon share: the Kamitani lab's per-hemisphere ROI masks in ``sourcedata/``, combined per ROI,
with BOLD in the participants' T1w space (see :mod:`bids_recon.datasets.god`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bids_recon.datasets import DatasetPreset, native_space_masks

#: A Kamitani-lab mask file: ``sub-01_mask_LH_V1d.nii.gz`` -> hemisphere, area.
MASK_NAME = re.compile(r"^sub-([A-Za-z0-9]+)_mask_(LH|RH)_([A-Za-z0-9]+)\.nii(\.gz)?$")
#: Areas of each bids_recon ROI, by preference: the first group with a mask present is used.
EARLY_AREAS = re.compile(r"^V[123][dv]?$")
HIGHER_AREAS = (("HVC",), ("LOC", "FFA", "PPA"))
#: The template of the atlas (``workflow.rois.template``'s default).
TEMPLATE = "MNI152NLin2009cAsym"


def kamitani_masks(bids_dir: Path | None) -> dict[str, list[str]]:
    """``workflow.rois.user_masks`` from the Kamitani lab's per-hemisphere masks of the dataset (GOD, Deeprecon).

    Looks in ``bids_dir/sourcedata/sub-*/anat/`` (the first participant with masks names the files; ``{subject}``
    stands for each participant's label).

    Returns
    -------
    dict
        ``earlyvisual`` and ``highervisual`` -> their files (both hemispheres), each present only when its masks are;
        empty when the dataset has none.
    """
    if bids_dir is None:
        return {}
    found: dict[str, set[tuple[str, str, str]]] = {}
    for path in sorted(Path(bids_dir).glob("sourcedata/sub-*/anat/sub-*_mask_*.nii*")):
        parsed = MASK_NAME.match(path.name)
        if parsed:
            found.setdefault(parsed.group(1), set()).add((parsed.group(2), parsed.group(3), path.name[path.name.index(
                ".nii"):]))
    if not found:
        return {}
    masks = found[sorted(found)[0]]
    folder = Path(bids_dir).absolute() / "sourcedata" / "sub-{subject}" / "anat"

    def files(areas) -> list[str]:
        return [str(folder / f"sub-{{subject}}_mask_{hemi}_{area}{ext}")
                for hemi, area, ext in sorted(masks) if areas(area)]

    out = {}
    early = files(lambda area: bool(EARLY_AREAS.match(area)))
    if early:
        out["earlyvisual"] = early
    for group in HIGHER_AREAS:
        higher = files(lambda area, group=group: area in group)
        if higher:
            out["highervisual"] = higher
            break
    return out


class KamitaniPreset(DatasetPreset):
    """What GOD and Deeprecon share: the per-hemisphere masks in ``sourcedata/`` combined per ROI, BOLD in T1w."""

    def settings_for(self, bids_dir: Path | None) -> dict[str, Any]:
        out = dict(self.settings)
        masks = kamitani_masks(bids_dir)
        if masks:
            out["workflow.rois.user_masks"] = masks
        return out

    def adapt(self, values: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
        """The masks with BOLD in T1w; the atlas where the BOLD is only in its template (or ``--space`` says so)."""
        return native_space_masks(values, chosen, "T1w", TEMPLATE)
