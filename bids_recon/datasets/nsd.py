"""The Natural Scenes Dataset (Allen et al. 2022), laid out as it downloads.

``nsddata_rawdata/`` (the raw BIDS dataset, task ``nsdcore``) beside ``nsddata_stimuli/`` (``nsd_stimuli.hdf5``)
and ``nsddata/`` (``experiments/nsd/nsd_stim_info_merged.csv``, ``nsd_expdesign.mat``): the ``nsd`` resolver
finds those from the raw dataset's folder. Test set: the shared1000 images (Takagi & Nishimoto 2023, Brain-Diffuser,
MindEye). Captions: COCO's caption files by ``cocoId``, where NSD's own ``nsd_access`` puts them.
"""

from bids_recon.datasets import DatasetPreset, register


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
