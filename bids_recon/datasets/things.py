"""THINGS-fMRI (Hebart et al. 2023; OpenNeuro ds004192).

Events name each image by ``file_path`` (``dog/dog_12s.jpg``) in the THINGS image set, distributed outside the
BIDS tree (give its folder with ``--stimuli-dir``); catch images (``trial_type`` ``catch``, artificial images
that are not in THINGS) are modelled in the GLM but never decoded; the test set is ``trial_type=test`` (100 images
shown in every session). THINGS has no captions: each image is captioned by its concept (the folder of its
``file_path``). The published fMRIPrep 20.2.0 outputs are in ``space-T1w`` without ``res-``.
"""

from bids_recon.datasets import DatasetPreset, register


@register
class Things(DatasetPreset):
    name = "things"
    title = "THINGS-fMRI (OpenNeuro ds004192)"
    recipe = "datasets/things.md"
    settings = {
        "execution.task_id": "things",
        "workflow.stimuli.resolver": "files:exclude=trial_type:catch",
        "workflow.stimuli.column": "file_path",
        "workflow.stimuli.test_split": "trial_type=test",
        "workflow.stimuli.category_captions": True,
        "workflow.space": "T1w",
        "workflow.resolution": None,
    }
