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

NSD's ROI volumes and the spaces of the two routes: the betas and ``ppdata/subjNN/func1pt8mm/roi/`` are in NSD's
own functional space (func1pt8mm), which no fMRIPrep output shares (fMRIPrep's T1w is not NSD's anatomical
preparation either: NSD registers its functional and anatomical data non-linearly). NSD also ships each
participant's ROIs in MNI space (``ppdata/subjNN/MNI/roi/``, on FSL's 1 mm MNI152 template: TemplateFlow's
``MNI152NLin6Asym``). So on the raw route (``-d fmriprep=``, our GLM) the preset uses them where fMRIPrep wrote
``space-MNI152NLin6Asym`` BOLD (``fmriprep --output-spaces MNI152NLin6Asym:res-2``): ``--space MNI152NLin6Asym``
and ``--roi-mask`` NSD's MNI ``streams`` (resampled to the BOLD grid). With BOLD only in MNI152NLin2009cAsym the
atlas serves (in its own space); with BOLD only in T1w the atlas is refused (exit 65) and the message says which
``--roi-mask`` to give.

``bids_recon-fetch --include nsd-metadata`` (and ``nsd-stimuli``) gets NSD's image table, design and stimuli from
NSD's bucket and COCO's captions (:func:`nsd_downloads`), laid out as NSD's download is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bids_recon.datasets import DatasetPreset, chosen_value, fmriprep_spaces, register, resolution_in
from bids_recon.download import FetchItem, Layout, url_name

#: Settings the preset adds to import NSD's betas (dropped when the user runs the GLM: ``--betas none`` or
#: ``-d fmriprep=``).
IMPORT_KEYS = ("workflow.glm.betas", "workflow.rois.user_masks", "workflow.space", "workflow.resolution")
#: NSD's streams ROIs (``nsddata/ppdata/subjNN/func1pt8mm/roi/streams.nii.gz``) used for each bids_recon ROI.
STREAMS_ROIS = {"earlyvisual": "early", "highervisual": "ventral"}
#: The TemplateFlow name of NSD's MNI space (FSL's MNI152, ``ppdata/subjNN/MNI/``).
NSD_MNI = "MNI152NLin6Asym"


def _root_holding(bids_dir: Path | None, *folders: str) -> Path | None:
    """``bids_dir`` or its parent (NSD's download root above ``nsddata_rawdata``) when it holds ``folders``."""
    if bids_dir is None:
        return None
    for candidate in (Path(bids_dir), Path(bids_dir).parent):
        if candidate.joinpath(*folders).is_dir():
            return candidate.absolute()
    return None


def nsd_data_root(bids_dir: Path | None) -> Path | None:
    """NSD's download root of a raw route: ``bids_dir`` or its parent when it holds ``nsddata/ppdata``."""
    return _root_holding(bids_dir, "nsddata", "ppdata")


def streams_masks(roi_dir: Path) -> dict[str, str]:
    """``workflow.rois.user_masks`` from NSD's ``streams.nii.gz`` in ``roi_dir`` (``{subject}`` in the path)."""
    return {name: f"{roi_dir / 'streams.nii.gz'}:{label}" for name, label in STREAMS_ROIS.items()}


def nsd_root(bids_dir: Path | None) -> Path | None:
    """The NSD download root of ``bids_dir`` (itself or its parent) when it holds NSD's betas, else ``None``."""
    return _root_holding(bids_dir, "nsddata_betas", "ppdata")


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
            "workflow.rois.user_masks": streams_masks(roi_dir),
            "workflow.space": "func1pt8mm",
            "workflow.resolution": None,
        })
        return out

    def adapt(self, values: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
        """No import when the user asked for the GLM: ``--betas none`` (or another import), or fMRIPrep outputs;
        then NSD's MNI ROIs where the BOLD is in their space (see the module docstring)."""
        glm = (chosen.get("workflow") or {}).get("glm") or {}
        derivatives = (chosen.get("execution") or {}).get("derivatives") or {}
        typed = glm.get("betas")
        if str(typed if typed is not None else "import").strip().lower() in ("", "none") or "fmriprep" in derivatives:
            values = {k: v for k, v in values.items() if k not in IMPORT_KEYS}
        if "workflow.glm.betas" in values or typed not in (None, "", "none"):
            return values
        return {**values, **self.raw_route(chosen)}

    def raw_route(self, chosen: dict[str, Any]) -> dict[str, Any]:
        """Space and ROIs of our GLM on NSD's raw data: NSD's MNI ``streams`` with ``space-MNI152NLin6Asym`` BOLD."""
        root = nsd_data_root(chosen_value(chosen, "execution.bids_dir"))
        if root is None or not any(root.glob("nsddata/ppdata/subj*/MNI/roi/streams.nii*")):
            return {}
        typed = chosen_value(chosen, "workflow.space")
        found = fmriprep_spaces(chosen)
        if typed != NSD_MNI and (typed is not None or NSD_MNI not in {space for space, _ in found}):
            return {}
        roi_dir = root / "nsddata" / "ppdata" / "subj{subject}" / "MNI" / "roi"
        return {"workflow.space": NSD_MNI, "workflow.resolution": resolution_in(found, NSD_MNI, "2"),
                "workflow.rois.user_masks": streams_masks(roi_dir)}


# ------------------------------------------------------------------------------------------------------------------
# bids_recon-fetch

NSD_S3 = "https://natural-scenes-dataset.s3.amazonaws.com"
#: NSD files (relative to the bucket) and what they are for.
NSD_METADATA = {
    "nsddata/experiments/nsd/nsd_stim_info_merged.csv": "NSD image table: nsdId, cocoId, cocoSplit, shared1000",
    "nsddata/experiments/nsd/nsd_expdesign.mat": "NSD design: sharedix (the shared test images), trial order",
}
NSD_STIMULI = {"nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5": "all 73,000 NSD images (imgBrick, 425 px, ~37 GB)"}
#: COCO 2017 captions (Takagi & Nishimoto's caption source for NSD, joined by the table's cocoId/cocoSplit).
COCO_ANNOTATIONS = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
#: The ``bids_recon-fetch --include`` groups of NSD's files.
FETCH_GROUPS = ("nsd-metadata", "nsd-stimuli")


def nsd_downloads(layout: Layout, groups: Sequence[str]) -> list[FetchItem]:
    """NSD metadata (and stimuli) from the NSD bucket, COCO captions from COCO, for the chosen fetch groups."""
    metadata, stimuli = FETCH_GROUPS
    items = []
    files = {**(NSD_METADATA if metadata in groups else {}), **(NSD_STIMULI if stimuli in groups else {})}
    for rel, purpose in files.items():
        group = stimuli if rel in NSD_STIMULI else metadata
        items.append(FetchItem(group, layout.nsd / rel, "url", f"{NSD_S3}/{rel}", purpose=purpose))
    if metadata in groups:
        items.append(FetchItem(metadata, layout.nsd / "coco" / url_name(COCO_ANNOTATIONS), "url",
                               COCO_ANNOTATIONS, purpose="COCO 2017 captions (captions_train/val2017.json)"))
    return items
