"""Evaluation metrics of reconstructions.

:mod:`~bids_recon.evaluate.metrics`: PixCorr, SSIM and 2-way identification on arrays (pixels, decoded
features). :mod:`~bids_recon.evaluate.standard`: the field's published table (AlexNet, InceptionV3, CLIP,
EffNet-B1, SwAV, retrieval) with networks from local weights (:mod:`~bids_recon.evaluate.networks`).
:mod:`~bids_recon.evaluate.variants`: :func:`evaluate_generated`, both kinds for every variant and sample a generator
made (the call of every generator's evaluation node). :mod:`~bids_recon.evaluate.published`: the published rows
and whether a run is comparable with them.
"""

from bids_recon.evaluate.metrics import (
    evaluate_reconstructions,
    pixcorr,
    ssim,
    two_way_identification,
)
from bids_recon.evaluate.standard import (
    METRICS,
    MetricsResult,
    StandardEvaluator,
    compute_standard_metrics,
    retrieval_top1,
)
from bids_recon.evaluate.variants import evaluate_generated

__all__ = ["METRICS", "MetricsResult", "StandardEvaluator", "compute_standard_metrics", "evaluate_generated",
           "evaluate_reconstructions", "pixcorr", "retrieval_top1", "ssim", "two_way_identification"]
