"""Settings of the evaluation (``[workflow.evaluate]``): the one place their defaults live.

Where the evaluation networks come from and whether they may be downloaded is not here: weights are read from
``TORCH_HOME`` / ``HF_HOME`` (:mod:`bids_recon.evaluate.networks`), and downloads are the run-wide switch
``execution.allow_download`` (``--allow-download``), which covers the diffusion model as well. The device is the
run's ``execution.device``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bids_recon.evaluate.metrics import EVAL_SIZE
from bids_recon.params import setting


def _metric_ids() -> list[str]:
    from bids_recon.evaluate.standard import METRICS

    return ["all", *METRICS]


def _selection_rules() -> list[str]:
    from bids_recon.evaluate.standard import SELECTIONS

    return list(SELECTIONS)


def _check_metrics(value: list[str]) -> str | None:
    if "all" in value and len(value) > 1:
        return "'all' cannot be combined with metric ids"
    return None


def _published_datasets() -> list[str]:
    from bids_recon.evaluate.published import PUBLISHED_SPLITS

    return ["", *PUBLISHED_SPLITS]


@dataclass
class EvaluationParams:
    """How reconstructions are compared with the seen images."""

    image_size: int = setting(EVAL_SIZE, ge=8, doc="size (px) at which PixCorr and SSIM are computed")
    metrics: list[str] = setting(factory=lambda: ["all"], choices=_metric_ids, min_items=1, check=_check_metrics,
                                 doc=(
        "the field's metrics to compute (ids of bids_recon.evaluate.standard.METRICS, or 'all'); a metric whose "
        "network weights are not on disk is reported as not computed (run bids_recon-fetch); bids_recon's own "
        "pixel- and feature-space identification is always computed"))
    batch_size: int = setting(32, ge=1, doc="images per forward pass of the evaluation networks")
    selection: str = setting("mean", choices=_selection_rules, doc=(
        "what a metrics row reports for a generator that makes several samples per image: 'mean' = each metric "
        "averaged over the samples; 'brain_clip' = best of n, per image the sample whose CLIP embedding is closest "
        "to the brain-decoded CLIP embedding (MindEye's rule; needs a CLIP-space decoder); 'oracle_clip' = per "
        "image the sample closest to the seen image in CLIP space (uses the ground truth: an upper bound)"))
    dataset: str = setting("", choices=_published_datasets, doc=(
        "the dataset of this run as the published tables name it ('nsd'); with NSD's shared1000 test split "
        "(workflow.stimuli.test_split) the report shows the published rows as comparable, otherwise they are "
        "marked 'different data'; empty: not a dataset with published rows"))
