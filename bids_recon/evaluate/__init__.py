"""Evaluation metrics of reconstructions."""

from bids_recon.evaluate.metrics import (
    evaluate_reconstructions,
    pixcorr,
    ssim,
    two_way_identification,
)

__all__ = ["evaluate_reconstructions", "pixcorr", "ssim", "two_way_identification"]
