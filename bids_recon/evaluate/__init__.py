"""Evaluation metrics of reconstructions.

:mod:`~bids_recon.evaluate.metrics`: PixCorr, SSIM and 2-way identification on arrays (pixels, decoded
features). :mod:`~bids_recon.evaluate.standard`: the field's published table (AlexNet, InceptionV3, CLIP,
EffNet-B1, SwAV, retrieval) with networks from local weights (:mod:`~bids_recon.evaluate.networks`).
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

__all__ = ["METRICS", "MetricsResult", "StandardEvaluator", "compute_standard_metrics", "evaluate_reconstructions",
           "pixcorr", "retrieval_top1", "ssim", "two_way_identification"]
