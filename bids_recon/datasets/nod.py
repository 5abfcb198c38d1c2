"""Natural Object Dataset (Gong et al. 2023; OpenNeuro ds004496).

Two tasks analysed together: ``imagenet`` (ImageNet images shown once each, ``stim_file`` =
``imagenet/n03131574/n03131574_8247.JPEG``, images in the dataset's ``stimuli/``) trains, and ``coco`` (120 COCO
images shown 10 times or more, ``condition`` = ``coco/000000124419.jpg``, images not in the dataset: give COCO's
image folder with ``--stimuli-dir``) tests, by repeats. The published fMRIPrep outputs are in ``space-T1w``
without ``res-`` and write ``run-1`` for the raw ``run-01``. Captions: COCO's files by id; ImageNet images by
their synset's words (``stimuli/imagenet/info/synset_words.txt`` in the dataset).
"""

from bids_recon.datasets import DatasetPreset, register


@register
class Nod(DatasetPreset):
    name = "nod"
    title = "Natural Object Dataset (OpenNeuro ds004496)"
    recipe = "datasets/nod.md"
    settings = {
        "execution.task_id": ["imagenet", "coco"],
        "workflow.stimuli.resolver": "files",
        "workflow.stimuli.test_split": "repeats",
        "workflow.stimuli.test_min_repeats": 2,
        "workflow.stimuli.category_captions": True,
        "workflow.stimuli.synset_words": "stimuli/imagenet/info/synset_words.txt",
        "workflow.space": "T1w",
        "workflow.resolution": None,
    }
