"""Generic Object Decoding (Horikawa & Kamitani 2017; OpenNeuro ds001246).

Events (``event_type`` rest/stimulus, ``stimulus_name`` ``n03626115_19498``) name ImageNet images, which are not
distributed with the dataset (give their folder with ``--stimuli-dir``). Rest blocks are not trials; the one-back
repetition blocks (a stimulus row showing the image of the block before it) are modelled but not decoded. The
perception task only; the test set is the ``perceptionTest`` sessions (50 images x 35 runs). Captions: the
ImageNet category (``--synset-words``). GOD ships SPM-preprocessed data, not fMRIPrep's: run fMRIPrep first.

ROIs: the dataset's own masks, one per hemisphere and area
(``sourcedata/sub-NN/anat/sub-NN_mask_{LH,RH}_{V1d,V1v,V2d,V2v,V3d,V3v,...,LOC,FFA,PPA,HVC}.nii.gz``), in the
participant's anatomical space; the preset combines them (:func:`bids_recon.datasets.kamitani.kamitani_masks`):
early visual = the union of V1-V3 of both hemispheres, higher visual = HVC of both (or LOC, FFA and PPA where
there is no HVC mask). They are taken in world coordinates, so they fit fMRIPrep's ``space-T1w`` BOLD (fMRIPrep
keeps the T1w's coordinates, and the anatomy session's T1w is the one the masks belong to); the preset therefore
uses ``--space T1w --res none``. When the fMRIPrep folder has no T1w BOLD but MNI152NLin2009cAsym, or ``--space``
names another space, the masks are dropped and the atlas serves in its own space
(:func:`bids_recon.datasets.native_space_masks`).
"""

from bids_recon.datasets import register
from bids_recon.datasets.kamitani import KamitaniPreset


@register
class God(KamitaniPreset):
    name = "god"
    title = "Generic Object Decoding (OpenNeuro ds001246)"
    recipe = "datasets/god.md"
    settings = {
        "execution.task_id": "perception",
        "workflow.stimuli.resolver": "imagenet",
        "workflow.stimuli.test_split": "ses-perceptionTest*",
        "workflow.stimuli.category_captions": True,
        "workflow.space": "T1w",
        "workflow.resolution": None,
    }
