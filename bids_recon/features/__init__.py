"""Stimulus loading (resolvers, captions) and stimulus features (decoding targets)."""

from bids_recon.features.image_basis import ImageBasis, fit_image_basis, image_targets
from bids_recon.features.stimuli import (
    RESOLVERS,
    StimulusResolver,
    captions_for,
    captions_path,
    load_captions,
    resolver_for,
    stimulus_captions,
    trial_rows,
)

__all__ = ["RESOLVERS", "ImageBasis", "StimulusResolver", "captions_for", "captions_path", "fit_image_basis",
           "image_targets", "load_captions", "resolver_for", "stimulus_captions", "trial_rows"]
