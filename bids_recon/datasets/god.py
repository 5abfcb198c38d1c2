"""Generic Object Decoding (Horikawa & Kamitani 2017; OpenNeuro ds001246).

Events (``event_type`` rest/stimulus, ``stimulus_name`` ``n03626115_19498``) name ImageNet images, which are not
distributed with the dataset (give their folder with ``--stimuli-dir``). Rest blocks are not trials; the one-back
repetition blocks (a stimulus row showing the image of the block before it) are modelled but not decoded. The
perception task only; the test set is the ``perceptionTest`` sessions (50 images x 35 runs). Captions: the
ImageNet category (``--synset-words``). GOD ships SPM-preprocessed data, not fMRIPrep's: run fMRIPrep first.
"""

from bids_recon.datasets import DatasetPreset, register


@register
class God(DatasetPreset):
    name = "god"
    title = "Generic Object Decoding (OpenNeuro ds001246)"
    recipe = "datasets/god.md"
    settings = {
        "execution.task_id": "perception",
        "workflow.stimuli.resolver": "imagenet",
        "workflow.stimuli.test_split": "ses-perceptionTest*",
        "workflow.stimuli.category_captions": True,
    }
