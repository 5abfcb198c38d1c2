"""BOLD5000 (Chang et al. 2019; OpenNeuro ds001499).

Events name each image by bare file name (``stim_file`` = ``COCO_train2014_000000420713.jpg``); the images are in
``BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli/{COCO,ImageNet,Scene}/`` outside the dataset (give that folder
with ``--stimuli-dir``: files are found by name). There is no official test split: the images shown more than
once (113 for CSI1: 112 x 4, 1 x 3) form it. COCO images are captioned from COCO's files by the id in their names;
the others by category (ImageNet synset words with ``--synset-words``, the scene name of the Scene images). The
published fMRIPrep outputs use the legacy names (``_bold_space-T1w_preproc.nii.gz``, ``_bold_confounds.tsv``).
"""

from bids_recon.datasets import DatasetPreset, register


@register
class Bold5000(DatasetPreset):
    name = "bold5000"
    title = "BOLD5000 (OpenNeuro ds001499)"
    recipe = "datasets/bold5000.md"
    settings = {
        "execution.task_id": "5000scenes",
        "workflow.stimuli.resolver": "files",
        "workflow.stimuli.test_split": "repeats",
        "workflow.stimuli.test_min_repeats": 2,
        "workflow.stimuli.category_captions": True,
        "workflow.space": "T1w",
        "workflow.resolution": None,
    }
