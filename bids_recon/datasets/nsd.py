"""The Natural Scenes Dataset (Allen et al. 2022), laid out as it downloads.

``nsddata_rawdata/`` (the raw BIDS dataset, task ``nsdcore``) beside ``nsddata_stimuli/`` (``nsd_stimuli.hdf5``),
``nsddata/`` (``experiments/nsd/nsd_stim_info_merged.csv``, ``nsd_expdesign.mat``, ``ppdata/subjNN/``) and
``nsddata_betas/``: the ``nsd`` resolver finds those from the dataset's folder. Test set: the shared1000 images
(Takagi & Nishimoto 2023, Brain-Diffuser, MindEye). Captions: COCO's caption files by ``cocoId``, where NSD's own
``nsd_access`` puts them.

When NSD's own betas are there (``nsddata_betas/`` in the folder given or beside it) and no fMRIPrep derivative is
(``derivatives/fmriprep`` in the folder), the preset imports them as Takagi & Nishimoto did: ``--betas nsd=ROOT``
(:mod:`bids_recon.glm.importers.nsd`, reading only the ROIs' voxels), the ROIs from NSD's ``streams`` atlas
(early visual = ``early``, higher visual = ``ventral``), outputs in ``space-func1pt8mm``. The folder given may then
be NSD's download root itself: no raw data are needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bids_recon.datasets import DatasetPreset, register

#: Settings the preset adds to import NSD's betas (dropped when the user runs the GLM: ``--betas none`` or
#: ``-d fmriprep=``).
IMPORT_KEYS = ("workflow.glm.betas", "workflow.rois.user_masks", "workflow.space", "workflow.resolution")
#: NSD's streams ROIs (``nsddata/ppdata/subjNN/func1pt8mm/roi/streams.nii.gz``) used for each bids_recon ROI.
STREAMS_ROIS = {"earlyvisual": "early", "highervisual": "ventral"}


def nsd_root(bids_dir: Path | None) -> Path | None:
    """The NSD download root of ``bids_dir`` (itself or its parent) when it holds NSD's betas, else ``None``."""
    if bids_dir is None:
        return None
    for candidate in (Path(bids_dir), Path(bids_dir).parent):
        if (candidate / "nsddata_betas" / "ppdata").is_dir():
            return candidate.absolute()
    return None


@register
class Nsd(DatasetPreset):
    name = "nsd"
    title = "Natural Scenes Dataset (NSD)"
    recipe = "datasets/nsd.md"
    settings = {
        "execution.task_id": "nsdcore",
        "workflow.stimuli.resolver": "nsd",
        "workflow.stimuli.test_split": "shared1000",
        "workflow.stimuli.captions": "../nsddata_stimuli/stimuli/nsd/annotations",
    }

    def settings_for(self, bids_dir: Path | None) -> dict[str, Any]:
        out = dict(self.settings)
        root = nsd_root(bids_dir)
        if bids_dir is not None and root == Path(bids_dir).absolute():  # the download root itself
            out["workflow.stimuli.captions"] = "nsddata_stimuli/stimuli/nsd/annotations"
        if root is None or (Path(bids_dir) / "derivatives" / "fmriprep").is_dir():
            return out
        roi_dir = root / "nsddata" / "ppdata" / "subj{subject}" / "func1pt8mm" / "roi"
        out.update({
            "workflow.glm.betas": f"nsd={root}:voxels=rois",
            "workflow.rois.user_masks": {name: f"{roi_dir / 'streams.nii.gz'}:{label}"
                                         for name, label in STREAMS_ROIS.items()},
            "workflow.space": "func1pt8mm",
            "workflow.resolution": None,
        })
        return out

    def adapt(self, values: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
        """No import when the user asked for the GLM: ``--betas none`` (or another import), or fMRIPrep outputs."""
        glm = (chosen.get("workflow") or {}).get("glm") or {}
        derivatives = (chosen.get("execution") or {}).get("derivatives") or {}
        if str(glm.get("betas", "import")).strip().lower() in ("", "none") or "fmriprep" in derivatives:
            return {k: v for k, v in values.items() if k not in IMPORT_KEYS}
        return values
