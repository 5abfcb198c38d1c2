"""Stimulus loading and stimulus features (decoding targets)."""

from bids_recon.features.image_basis import ImageBasis, fit_image_basis, image_targets
from bids_recon.features.stimuli import StimulusResolver, load_captions

__all__ = ["ImageBasis", "StimulusResolver", "fit_image_basis", "image_targets", "load_captions"]
